"""The bot's voice at a call's rate (voicebot.voice), over the real on-disk speech cache
with the real pyttsx3 (espeak-ng) engine, as tests/test_speech_cache.py uses them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from test_speech_cache import CountingSynthesizer

from voicebot.resample import resample
from voicebot.tts.base import Speech
from voicebot.tts.cache import SpeechCache
from voicebot.tts.pyttsx3_engine import Pyttsx3Synthesizer
from voicebot.voice import SpeechSource, Voice

PHONE_RATE = 8000


class SynthesizerOnly(SpeechSource):
    """A speech source with no disk behind it: the synthesiser itself."""

    def __init__(self, synthesizer: CountingSynthesizer) -> None:
        self.synthesizer = synthesizer

    async def render(self, text: str) -> Speech:
        return await self.synthesizer.synthesize(text)


@pytest.fixture(scope="module")
def espeak() -> Pyttsx3Synthesizer:
    return Pyttsx3Synthesizer()


@pytest.fixture
def counting(espeak: Pyttsx3Synthesizer) -> CountingSynthesizer:
    return CountingSynthesizer(espeak)


@pytest.fixture
def cache(counting: CountingSynthesizer, tmp_path: Path) -> SpeechCache:
    return SpeechCache(counting, tmp_path / "speech")


def test_clip_is_the_rendered_speech_resampled_to_the_call_rate(cache: SpeechCache) -> None:
    voice = Voice(cache)
    text = "はい。"
    phone = asyncio.run(voice.clip(text, PHONE_RATE))
    speech = cache.get(text)
    assert speech is not None and speech.sample_rate != PHONE_RATE
    assert phone.dtype == np.int16
    assert np.array_equal(phone, resample(speech.samples, speech.sample_rate, PHONE_RATE))
    # At the synthesiser's own rate the clip is the rendered audio itself.
    native = asyncio.run(voice.clip(text, speech.sample_rate))
    assert np.array_equal(native, speech.samples)


def test_a_clip_is_memoised_per_text_and_rate(
    cache: SpeechCache, counting: CountingSynthesizer
) -> None:
    """The second time, the clip comes from memory: no synthesis, no disk (the file is
    gone), no resampling (the very same array)."""
    voice = Voice(cache)
    text = "少々お待ちください。"
    first = asyncio.run(voice.clip(text, PHONE_RATE))
    cache.path(text).unlink()
    again = asyncio.run(voice.clip(text, PHONE_RATE))
    assert again is first
    assert voice.cached(text, PHONE_RATE) is first
    assert voice.cached(text, 16000) is None  # another rate is another clip
    assert counting.calls == [text]


def test_memory_holds_at_most_max_clips_and_drops_the_least_recently_used(
    cache: SpeechCache,
) -> None:
    voice = Voice(cache, max_clips=2)
    asyncio.run(voice.clip("はい。", PHONE_RATE))
    asyncio.run(voice.clip("いいえ。", PHONE_RATE))
    assert voice.cached("はい。", PHONE_RATE) is not None  # used again: now the most recent
    asyncio.run(voice.clip("失礼いたします。", PHONE_RATE))
    assert voice.cached("いいえ。", PHONE_RATE) is None
    assert voice.cached("はい。", PHONE_RATE) is not None
    assert voice.cached("失礼いたします。", PHONE_RATE) is not None


def test_ready_finds_a_clip_rendered_on_disk_without_synthesis(
    cache: SpeechCache, counting: CountingSynthesizer
) -> None:
    """A prompt rendered at start-up (or by another process) is on disk: ``ready`` says
    so, loads it into memory at the call's rate, and synthesises nothing."""
    text = "ほかにご質問はありますか。"
    asyncio.run(cache.render(text))
    assert counting.calls == [text]
    voice = Voice(SpeechCache(counting, cache.directory))
    assert voice.cached(text, PHONE_RATE) is None
    assert asyncio.run(voice.ready(text, PHONE_RATE))
    assert counting.calls == [text]  # nothing synthesised for ready()
    loaded = voice.cached(text, PHONE_RATE)
    speech = cache.get(text)
    assert loaded is not None and speech is not None
    assert np.array_equal(loaded, resample(speech.samples, speech.sample_rate, PHONE_RATE))


def test_ready_is_false_for_text_not_rendered_and_renders_nothing(
    cache: SpeechCache, counting: CountingSynthesizer
) -> None:
    voice = Voice(cache)
    text = "この文はまだ音声になっていません。"
    assert not asyncio.run(voice.ready(text, PHONE_RATE))
    assert counting.calls == []
    assert not cache.path(text).exists()
    assert voice.cached(text, PHONE_RATE) is None


def test_ready_without_a_disk_cache_is_true_only_for_clips_in_memory(
    counting: CountingSynthesizer,
) -> None:
    voice = Voice(SynthesizerOnly(counting))
    assert not asyncio.run(voice.ready("はい。", PHONE_RATE))
    asyncio.run(voice.clip("はい。", PHONE_RATE))
    assert asyncio.run(voice.ready("はい。", PHONE_RATE))
    assert counting.calls == ["はい。"]


def test_warm_loads_each_text_once(cache: SpeechCache, counting: CountingSynthesizer) -> None:
    voice = Voice(cache)
    asyncio.run(voice.warm(["はい。", "いいえ。", "はい。"], PHONE_RATE))
    assert counting.calls == ["はい。", "いいえ。"]
    assert voice.cached("はい。", PHONE_RATE) is not None
    assert voice.cached("いいえ。", PHONE_RATE) is not None
