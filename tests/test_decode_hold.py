"""A speculation's decoding waits for the caller's pause to last (``DecodeHold``): on the
real recogniser and through the call's recognition schedule."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from conftest import DATA
from test_whisper_recognizer import spy_decodings

from voicebot.asr.decode_hold import DecodeHold
from voicebot.asr.whisper import WhisperRecognizer, faq_vocabulary_prompt
from voicebot.caller_audio import CallerAudio
from voicebot.clock import WallClock
from voicebot.endpointing import SpeechEnd
from voicebot.recognition_schedule import READY_MARGIN_MS, RecognitionSchedule
from voicebot.resample import resample
from voicebot.wavfile import read_wav

LONG_HOLD_S = 600.0  # far longer than any test may wait: only a release ends it
CLIP = DATA / "audio" / "dev" / "jf_alpha" / "071.wav"  # 税務の窓口は何時まで…


def waits_in_a_thread(hold: DecodeHold) -> threading.Thread:
    waiter = threading.Thread(target=hold.wait, daemon=True)
    waiter.start()
    return waiter


def test_a_hold_ends_when_released():
    hold = DecodeHold(LONG_HOLD_S)
    waiter = waits_in_a_thread(hold)
    waiter.join(0.2)
    assert waiter.is_alive() and not hold.released
    hold.release()
    waiter.join(10)
    assert not waiter.is_alive() and hold.released


def test_a_hold_that_has_run_out_does_not_wait():
    for wait_s in (0.0, -1.0):  # the pause already lasted long enough
        waiter = waits_in_a_thread(DecodeHold(wait_s))
        waiter.join(10)
        assert not waiter.is_alive()


@pytest.fixture(scope="module")
def recognizer(faq):
    rec = WhisperRecognizer(initial_prompt=faq_vocabulary_prompt(faq), n_best=2)
    rec.load()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def samples():
    audio = read_wav(CLIP)
    return resample(audio.samples, audio.sample_rate, 16000)


def test_a_held_recognition_dropped_before_its_release_makes_no_decoding(
    recognizer, samples, monkeypatch
):
    """The caller went on before the pause lasted: the encoder pass was made, no decoding."""
    seen = spy_decodings(recognizer, monkeypatch)

    async def drop_while_held():
        task = asyncio.ensure_future(recognizer.transcribe(samples, hold=DecodeHold(LONG_HOLD_S)))
        await asyncio.sleep(1.0)  # long enough to be inside the hold, not to outlast it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(drop_while_held())
    recognizer._executor.submit(lambda: None).result(timeout=30)  # its worker is free again
    assert seen == [] and recognizer._in_flight == 0


def test_a_held_recognition_released_at_the_turn_end_is_heard(recognizer, samples, monkeypatch):
    seen = spy_decodings(recognizer, monkeypatch)
    hold = DecodeHold(LONG_HOLD_S)

    async def release_later():
        task = asyncio.ensure_future(recognizer.transcribe(samples, hold=hold))
        await asyncio.sleep(0.5)
        assert not task.done()  # held: nothing decoded yet
        hold.release()
        return await asyncio.wait_for(task, 60)

    transcript = asyncio.run(release_later())
    assert "窓口" in transcript.text and len(seen) == 1


def schedule_for(recognizer, decode_after_ms: float | None, ready_by_ms: float | None = None):
    clip = read_wav(CLIP)
    audio = CallerAudio(clip.sample_rate, recognizer.sample_rate, 60_000, 200, 200)
    audio.remember(0.0, clip.samples)
    schedule = RecognitionSchedule(recognizer, WallClock(), audio)
    schedule.hold_decoding(decode_after_ms, ready_by_ms)
    return schedule, 1000.0 * len(clip.samples) / clip.sample_rate


def test_a_speculation_the_turn_ends_on_is_decoded_at_once(recognizer, monkeypatch):
    """A live call's speculation is held (here for ten minutes); the turn ending at its
    pause releases it, and its result is the turn's."""
    seen = spy_decodings(recognizer, monkeypatch)
    schedule, duration_ms = schedule_for(recognizer, 1000.0 * LONG_HOLD_S)

    async def turn():
        await schedule.speculate(0.0, duration_ms)
        await asyncio.sleep(0.5)
        assert seen == []  # held after its encoder pass
        await schedule.recognise(0.0, SpeechEnd(duration_ms + 350.0, 0.0, duration_ms))
        while (finished := schedule.take_finished()) is None:
            await asyncio.sleep(0.01)
        return finished

    job, _end, speculative = asyncio.run(asyncio.wait_for(turn(), 60))
    assert speculative and "窓口" in job.result().text and len(seen) == 1


def test_a_speculation_dropped_while_held_costs_no_decoding(recognizer, monkeypatch):
    seen = spy_decodings(recognizer, monkeypatch)
    schedule, duration_ms = schedule_for(recognizer, 1000.0 * LONG_HOLD_S)

    async def caller_goes_on():
        await schedule.speculate(0.0, duration_ms / 2)
        await asyncio.sleep(1.0)
        schedule.drop_speculation()  # SpeechResumed
        await asyncio.sleep(0.1)

    asyncio.run(caller_goes_on())
    recognizer._executor.submit(lambda: None).result(timeout=30)
    assert seen == [] and recognizer._in_flight == 0


@pytest.mark.parametrize("decode_after_ms", [None, 0])
def test_without_a_hold_a_speculation_decodes_at_once(recognizer, monkeypatch, decode_after_ms):
    seen = spy_decodings(recognizer, monkeypatch)
    schedule, duration_ms = schedule_for(recognizer, decode_after_ms)

    async def pause_only():
        await schedule.speculate(0.0, duration_ms)
        while (spec := schedule._spec) is not None and not spec[0].done():
            await asyncio.sleep(0.01)
        return spec

    spec = asyncio.run(asyncio.wait_for(pause_only(), 60))
    assert spec is not None and spec[3] is None and len(seen) == 1


def test_the_recogniser_knows_how_long_its_decodings_take(recognizer, samples):
    """The estimate is the median of the latest main decodings: there once a few were made,
    and no longer than the slowest whole recognition among them."""
    took = [recognizer.transcribe_sync(samples).processing_ms for _ in range(3)]
    estimate = recognizer.decode_ms_estimate
    assert estimate is not None and 0.0 < estimate <= max(took)


def test_a_fresh_recogniser_has_no_estimate_to_hold_by():
    assert WhisperRecognizer().decode_ms_estimate is None  # nothing decoded, nothing loaded


class CallTimeClock(WallClock):
    """Wall time as a call's: the clip's last speech is just now."""

    def __init__(self, now_ms: float) -> None:
        super().__init__()
        self.offset_ms = now_ms

    def now_ms(self) -> float:
        return super().now_ms() + self.offset_ms


def spec_after_pause(schedule, duration_ms):
    schedule.clock = CallTimeClock(duration_ms)

    async def pause_only():
        await schedule.speculate(0.0, duration_ms)
        spec = schedule._spec
        schedule.drop_speculation()
        return spec

    return asyncio.run(asyncio.wait_for(pause_only(), 60))


def test_where_decoding_is_slow_a_speculation_is_not_held(recognizer, monkeypatch):
    """A decoding that takes longer than the turn's end silence leaves nothing to wait for:
    held, the reply would be late by the hold."""
    monkeypatch.setattr(WhisperRecognizer, "decode_ms_estimate", property(lambda _: 400.0))
    schedule, duration_ms = schedule_for(recognizer, 1000.0 * LONG_HOLD_S, ready_by_ms=350.0)
    spec = spec_after_pause(schedule, duration_ms)
    assert spec is not None and spec[3] is None


def test_where_decoding_is_fast_the_hold_ends_in_time_for_the_turn_end(recognizer, monkeypatch):
    """A 100-ms decoding and a turn ending at 350 ms of pause: the hold lasts until about
    200 ms of pause (the margin kept), not the ten minutes asked for."""
    monkeypatch.setattr(WhisperRecognizer, "decode_ms_estimate", property(lambda _: 100.0))
    schedule, duration_ms = schedule_for(recognizer, 1000.0 * LONG_HOLD_S, ready_by_ms=350.0)
    spec = spec_after_pause(schedule, duration_ms)
    hold = spec[3]
    assert hold is not None and not hold.released
    left_s = hold._deadline - time.monotonic()
    assert 0.0 < left_s <= (350.0 - 100.0 - READY_MARGIN_MS) / 1000.0
