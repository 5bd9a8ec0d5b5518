"""The wait watch and the reply stream on their own: when fillers are due, how replies split."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voicebot.clock import VirtualClock
from voicebot.dialogue import Next, Reply
from voicebot.reply_stream import Piece, ReplyStream, plan_pieces
from voicebot.tts.cache import DEFAULT_SENTENCE_PAUSE_MS
from voicebot.waiting import WaitAction, WaitPolicy, WaitWatch

POLICY = WaitPolicy(ack_after_ms=500.0, filler_after_ms=800.0, give_up_after_ms=5000.0)


def test_an_acknowledgement_then_fillers_are_due_after_the_silence_and_not_before():
    watch = WaitWatch(POLICY)
    assert watch.due(10_000.0, bot_speaking=False) is WaitAction.NOTHING  # nothing owed
    watch.start(1000.0)
    assert watch.due(1490.0, bot_speaking=False) is WaitAction.NOTHING
    assert watch.due(1500.0, bot_speaking=False) is WaitAction.ACKNOWLEDGE
    watch.played_filler()
    assert watch.due(1600.0, bot_speaking=True) is WaitAction.NOTHING
    watch.filler_finished(1900.0)
    assert watch.due(2690.0, bot_speaking=False) is WaitAction.NOTHING
    assert watch.due(2700.0, bot_speaking=False) is WaitAction.FILLER
    watch.played_filler()
    watch.filler_finished(4000.0)
    assert watch.due(4800.0, bot_speaking=False) is WaitAction.FILLER_AGAIN


def test_a_later_start_does_not_restart_a_wait_under_way():
    watch = WaitWatch(POLICY)
    watch.start(1000.0)
    watch.played_filler()
    watch.start(1500.0)  # the reply was decided: still the same wait
    assert watch.since_ms == 1000.0 and watch.fillers == 1


def test_the_reply_heard_ends_the_wait():
    watch = WaitWatch(POLICY)
    watch.start(1000.0)
    watch.heard(1500.0)
    assert not watch.waiting
    assert watch.due(9000.0, bot_speaking=False) is WaitAction.NOTHING


def test_the_bot_speaking_unprompted_gets_no_acknowledgement_but_is_bounded():
    """The greeting or the news that staff were not reached renders slowly: 「はい。」
    would answer nobody, so the first filler is 「少々お待ちください。」, and the wait ends
    in a give-up like any other."""
    watch = WaitWatch(POLICY)
    watch.start(1000.0, unprompted=True)
    assert watch.due(1500.0, bot_speaking=False) is WaitAction.NOTHING  # no 「はい。」 at 500
    assert watch.due(1800.0, bot_speaking=False) is WaitAction.FILLER
    watch.played_filler()
    watch.filler_finished(2500.0)
    assert watch.due(3300.0, bot_speaking=False) is WaitAction.FILLER_AGAIN
    assert watch.due(6000.0, bot_speaking=False) is WaitAction.GIVE_UP
    watch.heard(6000.0)
    watch.start(7000.0)  # the next wait is a caller's again
    assert watch.due(7500.0, bot_speaking=False) is WaitAction.ACKNOWLEDGE


def test_a_caller_speaking_while_the_bot_is_late_on_its_own_is_acknowledged():
    """The greeting is late and the caller says 「もしもし」: their wait is a caller's
    (「はい。」 first, fillers counted afresh for their turn), and it still ends at the
    give-up due from the bot's own start."""
    watch = WaitWatch(POLICY)
    watch.start(0.0, unprompted=True)
    assert watch.due(800.0, bot_speaking=False) is WaitAction.FILLER
    watch.played_filler()
    watch.filler_finished(1500.0)
    watch.start(3000.0)  # the caller's speech ended
    assert watch.fillers == 0 and watch.first_sound_ms is None
    assert watch.due(3400.0, bot_speaking=False) is WaitAction.NOTHING
    assert watch.due(3500.0, bot_speaking=False) is WaitAction.ACKNOWLEDGE
    assert watch.due(5000.0, bot_speaking=False) is WaitAction.GIVE_UP  # 5 s after 0


def test_an_answer_running_dry_gets_the_short_filler():
    watch = WaitWatch(POLICY)
    watch.start(1000.0, mid_reply=True)
    assert watch.due(1800.0, bot_speaking=False) is WaitAction.FILLER_AGAIN


def test_a_long_wait_gives_up_but_never_cuts_a_filler():
    watch = WaitWatch(POLICY)
    watch.start(0.0)
    watch.played_filler()
    assert watch.due(6000.0, bot_speaking=True) is WaitAction.NOTHING
    watch.filler_finished(6000.0)
    assert watch.due(6020.0, bot_speaking=False) is WaitAction.GIVE_UP


def _ready(known: set[str]):
    async def is_ready(text: str) -> bool:
        return text in known

    return is_ready


def test_ready_parts_stay_whole_and_others_split_into_sentences():
    answer = "一つ目です。二つ目です！三つ目は「引用。」です。"
    pieces = asyncio.run(
        plan_pieces(("前置きです。あと少し。", answer), _ready({"前置きです。あと少し。"}))
    )
    assert [p.text for p in pieces] == [
        "前置きです。あと少し。",
        "一つ目です。",
        "二つ目です！",
        "三つ目は「引用。」です。",
    ]
    assert [p.pause_after_ms for p in pieces] == [
        0.0,
        DEFAULT_SENTENCE_PAUSE_MS,
        DEFAULT_SENTENCE_PAUSE_MS,
        0.0,
    ]


def test_the_stream_hands_out_pieces_in_order_with_pauses_and_marks_the_last():
    rendered: list[str] = []

    async def render(text: str) -> np.ndarray:
        rendered.append(text)
        return np.full(80, len(rendered), dtype=np.int16)

    async def scenario() -> list:
        reply = Reply(parts=("あ。い。",), kind="answer", next=Next.LISTEN)
        pieces = [Piece("あ。", 100.0), Piece("い。")]
        clock = VirtualClock()
        stream = ReplyStream(
            reply, 7, pieces, clock=clock, render=render, rate=8000, interruptible=True
        )
        await stream.start()
        assert rendered == ["あ。"]  # one piece at a time
        out = []
        for t in (1000.0, 2000.0):  # each rendering becomes visible once its time has passed
            clock.advance_to(t)
            while stream.ready():
                out.append(await stream.take())
        assert stream.finished
        return out

    first, second = asyncio.run(scenario())
    assert rendered == ["あ。", "い。"]
    assert len(first.samples) == 80 + 800 and not first.samples[80:].any()  # 100 ms pause
    assert (first.part, first.last, second.part, second.last) == (0, False, 1, True)
    assert first.reply_id == second.reply_id == 7 and first.interruptible


def test_a_failed_piece_raises_from_take():
    async def render(text: str) -> np.ndarray:
        raise RuntimeError("engine down")

    async def scenario() -> None:
        reply = Reply(parts=("あ。",), kind="answer", next=Next.LISTEN)
        clock = VirtualClock()
        stream = ReplyStream(
            reply,
            1,
            [Piece("あ。")],
            clock=clock,
            render=render,
            rate=8000,
            interruptible=True,
        )
        await stream.start()
        clock.advance_to(1000.0)
        assert stream.ready()
        with pytest.raises(RuntimeError, match="engine down"):
            await stream.take()

    asyncio.run(scenario())


def test_a_silence_stamped_ahead_of_the_clock_is_counted_from_now():
    """Caller frames stamped ahead of the call clock (a live transport filled a stall with
    silence, then the late frames came) do not hold the acknowledgement back."""
    watch = WaitWatch(POLICY)
    watch.start(1400.0)  # the caller's last speech, by frame stamps
    assert watch.due(1000.0, bot_speaking=False) is WaitAction.NOTHING  # the clock: 1000
    assert watch.due(1490.0, bot_speaking=False) is WaitAction.NOTHING
    assert watch.due(1500.0, bot_speaking=False) is WaitAction.ACKNOWLEDGE
