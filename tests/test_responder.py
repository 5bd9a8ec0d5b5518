"""The responder's playout on a live clock: a backlog of bot audio drains at the next pause.

A live transport plays the bot's frames at the real pace and silence of its own when it
has none. When the call loop stalls, the bot's frames reach it in a burst and queue up;
if the bot then went on sending one frame of silence per caller frame, that queue (and
the delay of every later word) would never shrink. The clock here is one the test moves
by hand, so that a burst is a burst whatever the machine's load; everything else is real.
"""

from __future__ import annotations

import asyncio

import numpy as np

from voicebot.clock import VirtualClock
from voicebot.dialogue import Next, Reply
from voicebot.events import EventRecorder
from voicebot.playout import Utterance
from voicebot.responder import BACKLOG_SLACK_MS, FRAME_MS, Responder
from voicebot.tts.base import Speech
from voicebot.voice import Voice
from voicebot.waiting import WaitPolicy

RATE = 8000
FRAME = RATE * FRAME_MS // 1000


class HandClock:
    """A live (real-time) call clock that only moves when the test says so."""

    realtime = True

    def __init__(self) -> None:
        self.now = 0.0

    def now_ms(self) -> float:
        return self.now


class Line:
    """The transport's sending side: keeps every frame the bot hands it."""

    name = "test-line"
    sample_rate = RATE

    def __init__(self) -> None:
        self.sent: list[np.ndarray] = []

    async def send(self, frame) -> None:  # type: ignore[no-untyped-def]
        self.sent.append(frame.samples)


class Silence:
    """A speech source that is never asked for anything in these tests."""

    async def render(self, text: str) -> Speech:
        return Speech(np.zeros(FRAME, dtype=np.int16), RATE)


def responder(clock) -> Responder:  # type: ignore[no-untyped-def]
    async def nothing(*_args: object) -> None:
        return None

    return Responder(
        call_id="test",
        voice=Voice(Silence()),
        clock=clock,
        rate=RATE,
        events=EventRecorder(),
        waiting=WaitPolicy(),
        reply_done=nothing,
        synthesis_failed=nothing,
    )


def speech(frames: int) -> Utterance:
    tone = (8000 * np.sin(np.arange(frames * FRAME) / 3.0)).astype(np.int16)
    return Utterance(tone, "はい。", "answer", reply_id=0)


async def play(r: Responder, line: Line, frames: int, clock: HandClock, step_ms: float) -> None:
    for _ in range(frames):
        await r.play_frame(line)
        clock.now += step_ms


def test_speech_sent_in_a_burst_is_never_dropped_and_the_silence_after_it_is():
    clock, line = HandClock(), Line()
    r = responder(clock)
    r.playout.enqueue(speech(10))

    async def burst() -> None:
        await play(r, line, 10, clock, 0.0)  # a stalled loop catching up: 200 ms at once
        await play(r, line, 5, clock, 0.0)  # idle, the 200 ms still unplayed

    asyncio.run(burst())
    assert len(line.sent) == 10 and all(f.any() for f in line.sent)
    assert r.silence_skipped == 5


def test_silence_is_sent_again_once_the_backlog_has_played():
    clock, line = HandClock(), Line()
    r = responder(clock)
    r.playout.enqueue(speech(10))

    async def burst_then_real_pace() -> None:
        await play(r, line, 10, clock, 0.0)
        clock.now += 200.0 - BACKLOG_SLACK_MS  # the transport has played all but the slack
        await play(r, line, 5, clock, FRAME_MS)  # idle at the real pace

    asyncio.run(burst_then_real_pace())
    assert len(line.sent) == 15
    assert r.silence_skipped == 0


def test_a_recorded_call_keeps_every_frame():
    clock, line = VirtualClock(), Line()
    r = responder(clock)
    r.playout.enqueue(speech(10))

    async def burst() -> None:
        for _ in range(15):
            await r.play_frame(line)

    asyncio.run(burst())
    assert len(line.sent) == 15 and r.silence_skipped == 0


def test_replies_are_unaffected_by_the_send_check():
    """The check looks at frames only: queued replies play in order, whole."""
    clock, line = HandClock(), Line()
    r = responder(clock)
    first, second = speech(3), speech(2)
    r.playout.enqueue(first)
    r.playout.enqueue(second)
    asyncio.run(play(r, line, 5, clock, FRAME_MS))
    heard = np.concatenate(line.sent)
    assert np.array_equal(heard, np.concatenate([first.samples, second.samples]))


class Stalled:
    """A speech source whose rendering waits until the test lets it finish (a stall)."""

    def __init__(self) -> None:
        self.go = asyncio.Event()

    async def render(self, text: str) -> Speech:
        await self.go.wait()
        return Speech(np.full(FRAME * 5, 3000, dtype=np.int16), RATE)


def test_barging_in_over_a_filler_keeps_a_reply_that_hands_over():
    """A reply that hands over (or hangs up) is rendering slowly behind 「少々お待ちください。」;
    the caller talks over the filler. The filler stops; the reply does not, or the call
    would neither go on nor end. Stopping for any other reason drops it as before."""

    async def scenario() -> None:
        for barged_in, kept in ((True, True), (False, False)):
            clock = HandClock()
            source = Stalled()
            bot = responder(clock)
            bot.voice = Voice(source)
            reply = Reply(
                parts=("担当の職員におつなぎします。",), kind="failure", next=Next.TRANSFER
            )
            await bot.say(reply, turn=None)
            filler = Utterance(
                np.full(FRAME * 30, 2000, dtype=np.int16), "少々お待ちください。", "filler"
            )
            bot.playout.enqueue(filler)
            cut = bot.stop(barged_in=barged_in)
            assert cut == {0}  # the filler was cut either way
            assert bot.busy is kept
            source.go.set()
            for _ in range(10):
                await asyncio.sleep(0)
            await bot.poll()
            queued = bot.playout.queued(bot.last_reply_id)
            assert [u.text for u in queued] == (["担当の職員におつなぎします。"] if kept else [])

    asyncio.run(scenario())
