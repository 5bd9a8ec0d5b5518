"""Whisper rates a hypothesis without the vocabulary hint only when the understanding
needs it: the chosen hypothesis of an answer, once."""

from __future__ import annotations

import asyncio

import pytest
from conftest import DATA

from voicebot.asr.whisper import HintFreeRatings, WhisperRecognizer, faq_vocabulary_prompt
from voicebot.resample import resample
from voicebot.wavfile import read_wav


@pytest.fixture(scope="module")
def recognizer(faq):
    rec = WhisperRecognizer(initial_prompt=faq_vocabulary_prompt(faq), extra_prompts=(None,))
    rec.load()
    yield rec
    rec.close()


def heard(rec: WhisperRecognizer, clip: str):
    audio = read_wav(DATA / "audio" / "dev" / clip)
    return asyncio.run(rec.transcribe(resample(audio.samples, audio.sample_rate, 16000)))


def test_an_answer_rates_only_the_hypothesis_it_chose(recognizer, understanding):
    """税務の窓口は何時まで…: answered; of its hypotheses only the chosen one is rated."""
    transcript = heard(recognizer, "jf_alpha/071.wav")
    ratings = transcript.unprompted
    assert len(ratings) >= 2 and ratings.rated == 0  # nothing rated by the recogniser
    match, decision = understanding.understand(
        transcript.text, transcript.alternatives, transcript.confidence, ratings
    )
    assert decision.action.value == "answer"
    assert ratings.rated == 1
    chosen = ratings[match.text]
    assert 0 < chosen <= 1
    assert ratings.rated == 1  # looked up again: not rated again
    # rated alone or with the others in one batch, a text gets the same probability
    assert ratings.rate_all()[match.text] == pytest.approx(chosen, abs=1e-3)
    assert ratings.rated == len(ratings)


def test_a_transfer_rates_nothing(recognizer, understanding):
    """オペレーターにつないでください: no answer to doubt, so no rating is made."""
    transcript = heard(recognizer, "jf_alpha/090.wav")
    _, decision = understanding.understand(
        transcript.text, transcript.alternatives, transcript.confidence, transcript.unprompted
    )
    assert decision.action.value == "transfer"
    assert transcript.unprompted.rated == 0


def test_a_rating_that_fails_counts_as_unheard(understanding):
    """The rating runs in the call loop; a failure there confirms instead of crashing."""

    def broken(_hypotheses):
        raise RuntimeError("no model")

    text = "納付書をなくしてしまったので再発行してほしいです"
    ratings = HintFreeRatings({text: (1, 2, 3)}, broken)
    assert text in ratings and "他の文" not in ratings
    _, decision = understanding.understand(text, (), 0.9, ratings)
    assert (decision.action.value, decision.faq_id) == ("confirm", "payment.lost-notice")
    assert ratings[text] == 0.0
