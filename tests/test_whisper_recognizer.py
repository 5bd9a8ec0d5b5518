"""The embedded Whisper recogniser on real phone-channel audio, and its output clean-up."""

from __future__ import annotations

import asyncio

import pytest
from conftest import DATA

from voicebot.asr.whisper import WhisperRecognizer, drop_repetition, faq_vocabulary_prompt
from voicebot.resample import resample
from voicebot.wavfile import read_wav


@pytest.mark.parametrize(
    ("heard", "kept"),
    [
        ("以上です以上です以上です以上", "以上です"),
        ("確定新国についてきたいんですが、確定新国についてき", "確定新国についてきたいんですが"),
        (
            "今年の税額、決定通知書がまだ来ていないんですが、今年の税額決定通知書",
            "今年の税額決定通知書がまだ来ていないんですが",
        ),
        ("はい。はい。", "はい。"),
        ("住民税、納税額剣剣剣剣剣剣剣剣剣剣", "住民税、納税額剣"),
        ("納付書をなくしたんですがががががが", "納付書をなくしたんですが"),
        ("住民税の納期は、いつですか", "住民税の納期は、いつですか"),  # nothing repeated
    ],
)
def test_repetition_is_dropped(heard, kept):
    assert drop_repetition(heard) == kept


def test_window_just_covers_the_utterance():
    rec = WhisperRecognizer(pad_seconds=1.5)
    assert rec.window_frames(16000 * 3) == 450  # 3 s + 1.5 s at 100 frames/s
    assert rec.window_frames(16000 * 40) == 3000  # never beyond the model's 30 s


def test_prompt_is_made_of_faq_titles(faq):
    prompt = faq_vocabulary_prompt(faq)
    assert prompt.endswith("。") and len(prompt) <= 162
    assert faq.entries[0].title in prompt


def test_recogniser_is_made_from_the_settings(faq):
    from voicebot.bot import make_recognizer
    from voicebot.config import Settings

    settings = Settings()
    settings.asr.compute_type = "float32"
    settings.asr.beam_size = 3
    rec = make_recognizer(settings, faq)
    assert isinstance(rec, WhisperRecognizer)
    assert (rec.compute_type, rec.beam_size) == ("float32", 3)
    assert rec.initial_prompt == faq_vocabulary_prompt(faq)
    rec.close()


@pytest.fixture(scope="module")
def recognizer(faq):
    rec = WhisperRecognizer(initial_prompt=faq_vocabulary_prompt(faq), n_best=2)
    rec.load()
    yield rec
    rec.close()


def test_transcribes_phone_audio_with_alternatives(recognizer):
    audio = read_wav(DATA / "audio" / "dev" / "jf_alpha" / "071.wav")  # 税務の窓口は何時まで…
    samples = resample(audio.samples, audio.sample_rate, 16000)
    transcript = asyncio.run(recognizer.transcribe(samples))
    assert "窓口" in transcript.text and "何時" in transcript.text
    assert transcript.audio_ms == pytest.approx(1000 * len(samples) / 16000)
    assert transcript.processing_ms > 0
    assert all(alt != transcript.text for alt in transcript.alternatives)
