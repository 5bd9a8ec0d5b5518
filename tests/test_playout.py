"""The bot's outgoing audio for one call (voicebot.playout): one 20 ms frame per tick.

Utterances are ramps of distinct values, so every sample of a frame says which
utterance it came from and where in it.
"""

from __future__ import annotations

import numpy as np

from voicebot.playout import Playout, Utterance

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz


def ramp(start: int, length: int) -> np.ndarray:
    return np.arange(start, start + length, dtype=np.int16)


def utterance(start: int, length: int, text: str = "はい。", **kw) -> Utterance:
    return Utterance(ramp(start, length), text, kind="answer", **kw)


def test_frames_are_20_ms_of_the_queued_audio_then_silence() -> None:
    playout = Playout(RATE)
    assert playout.frame_samples == FRAME
    assert not playout.speaking and playout.current is None
    idle = playout.next_frame()
    assert len(idle.frame) == FRAME and not idle.frame.any() and idle.frame.dtype == np.int16

    speech = utterance(1, 2 * FRAME)
    playout.enqueue(speech)
    assert playout.speaking and playout.current is speech
    first, second, third = (playout.next_frame() for _ in range(3))
    assert np.array_equal(first.frame, ramp(1, FRAME))
    assert np.array_equal(second.frame, ramp(1 + FRAME, FRAME))
    assert not third.frame.any()
    assert not playout.speaking


def test_started_and_finished_name_the_utterances_of_that_tick() -> None:
    """A tick can end one utterance and start the next: the frame carries both, back to
    back, and the tick reports each once."""
    playout = Playout(RATE)
    short = utterance(1, 100, "はい。")
    long = utterance(1000, 300, "少々お待ちください。")
    playout.enqueue(short)
    playout.enqueue(long)

    tick = playout.next_frame()
    assert tick.started == [short, long]
    assert tick.finished == [short]
    assert np.array_equal(tick.frame[:100], ramp(1, 100))
    assert np.array_equal(tick.frame[100:], ramp(1000, FRAME - 100))

    tick = playout.next_frame()
    assert tick.started == [] and tick.finished == []  # 60 + 160 of 300 played
    tick = playout.next_frame()
    assert tick.started == [] and tick.finished == [long]
    assert np.array_equal(tick.frame[:80], ramp(1000 + 220, 80))
    assert not tick.frame[80:].any()


def test_pause_gives_silence_and_resume_continues_where_it_stopped() -> None:
    playout = Playout(RATE)
    speech = utterance(1, 3 * FRAME)
    playout.enqueue(speech)
    playout.next_frame()
    playout.pause()
    paused = [playout.next_frame() for _ in range(5)]
    assert all(not t.frame.any() and not t.started and not t.finished for t in paused)
    assert playout.speaking and speech.position == FRAME  # still queued, position kept
    playout.resume()
    tick = playout.next_frame()
    assert np.array_equal(tick.frame, ramp(1 + FRAME, FRAME))
    assert tick.started == []  # resuming is not a new start


def test_cancel_returns_what_was_dropped_and_the_next_frame_is_silent() -> None:
    playout = Playout(RATE)
    first = utterance(1, 2 * FRAME, reply_id=7, part=0, last=False)
    second = utterance(5000, FRAME, reply_id=7, part=1)
    playout.enqueue(first)
    playout.enqueue(second)
    playout.next_frame()
    playout.pause()

    dropped = playout.cancel()
    assert dropped == [first, second]
    assert first.position == FRAME  # the first was half played
    assert second.position == 0
    assert not playout.speaking and not playout.paused  # a cancel also ends a pause
    assert not playout.next_frame().frame.any()
    assert playout.cancel() == []


def test_queued_lists_one_replys_parts_still_to_play() -> None:
    playout = Playout(RATE)
    filler = utterance(1, FRAME, "少々お待ちください。", reply_id=1)
    part0 = utterance(100, FRAME, "はい。", reply_id=2, part=0, last=False)
    part1 = utterance(200, FRAME, "納付書は再発行できます。", reply_id=2, part=1)
    for u in (filler, part0, part1):
        playout.enqueue(u)
    assert playout.queued(2) == [part0, part1]
    assert playout.queued(3) == []
    playout.next_frame()  # the filler
    playout.next_frame()  # part 0
    assert playout.queued(1) == []
    assert playout.queued(2) == [part1]


def test_identical_clips_are_still_two_utterances() -> None:
    playout = Playout(RATE)
    a = utterance(1, FRAME)
    b = utterance(1, FRAME)
    playout.enqueue(a)
    playout.enqueue(b)
    assert a != b
    assert playout.next_frame().finished == [a]
    assert playout.next_frame().finished == [b]


def test_frame_length_follows_the_rate_and_frame_ms() -> None:
    assert Playout(16000).frame_samples == 320
    assert Playout(48000, frame_ms=10).frame_samples == 480
