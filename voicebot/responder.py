"""The bot's side of the call: replies rendered, queued and played, and nobody left waiting.

A reply from the dialogue is rendered piece by piece (``reply_stream``) and queued on the
playout, which the call pulls one 20 ms frame at a time. While the caller waits for a
reply that is late, the wait watch (``waiting``) says when to play a filler. Observers
hear of every start and stop of the bot's speech through events; the turn log gets the
latency the caller had.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import numpy as np

from voicebot import prompts
from voicebot.clock import Clock
from voicebot.dialogue import Next, Reply
from voicebot.events import BotSpeechStarted, BotSpeechStopped, ComponentFailed, EventSink
from voicebot.frames import AudioFrame
from voicebot.jobs import Job
from voicebot.playout import Playout, Utterance
from voicebot.reply_stream import ReplyStream, plan_pieces
from voicebot.transport import CallTransport
from voicebot.turn import Turn
from voicebot.voice import Voice
from voicebot.waiting import WaitAction, WaitPolicy, WaitWatch

log = logging.getLogger(__name__)

FRAME_MS = 20
FILLER = "filler"

FILLERS = {
    WaitAction.ACKNOWLEDGE: prompts.ACKNOWLEDGE,
    WaitAction.FILLER: prompts.FILLER,
    WaitAction.FILLER_AGAIN: prompts.FILLER_AGAIN,
}

SILENCE_LEVEL = 300  # |sample| below this is silence on a phone line (as the tests measure it)
# A live transport plays the bot's frames at the real pace and plays silence of its own when
# it has none. After a stall of the call loop the frames go out in a burst and wait there
# (SIP: in the worker's queue), and, one frame sent per caller frame, that backlog would
# delay every later word of the call. Silence is therefore not sent while more than this
# much of the bot's audio still waits to be played: the backlog drains at the next pause.
# 60 ms is the SIP worker's prebuffer (three frames); measured with bench/soak.py.
BACKLOG_SLACK_MS = 60.0


def trimmed(clip: np.ndarray) -> np.ndarray:
    """The clip without its leading and trailing silence: a filler must be heard at once,
    and every millisecond of silence in it adds to the caller's wait."""
    loud = np.flatnonzero(np.abs(clip.astype(np.int32)) >= SILENCE_LEVEL)
    return clip[loud[0] : loud[-1] + 1] if len(loud) else clip


ReplyDone = Callable[[Reply], Awaitable[None]]
SynthesisFailed = Callable[[Reply, "Turn | None"], Awaitable[None]]


class Responder:
    """Renders, queues and plays the replies of one call."""

    def __init__(
        self,
        *,
        call_id: str,
        voice: Voice,
        clock: Clock,
        rate: int,
        events: EventSink,
        waiting: WaitPolicy,
        reply_done: ReplyDone,
        synthesis_failed: SynthesisFailed,
    ) -> None:
        self.call_id = call_id
        self.voice = voice
        self.clock = clock
        self.rate = rate
        self.events = events
        self.playout = Playout(rate, FRAME_MS)
        self.wait = WaitWatch(waiting)
        self._reply_done = reply_done
        self._synthesis_failed = synthesis_failed
        self._streams: list[ReplyStream] = []
        self._replies: dict[int, tuple[Reply, Turn | None]] = {}
        self._reply_seq = 0
        self._fillers: dict[str, np.ndarray] = {}
        self._filler_jobs: dict[str, Job[np.ndarray]] = {}
        self._waiting_turn: Turn | None = None  # the turn the caller is waiting on
        self._played_until_ms: float | None = None  # live clock: the audio sent has played by
        self.silence_skipped = 0  # silent frames not sent because audio was still queued

    @property
    def busy(self) -> bool:
        """Bot speech is queued or being rendered."""
        return self.playout.speaking or bool(self._streams)

    @property
    def last_reply_id(self) -> int:
        return self._reply_seq

    # -- replies -------------------------------------------------------------------------
    async def say(self, reply: Reply, turn: Turn | None) -> None:
        """Render the reply piece by piece (cached audio, usually) and queue it for playout."""
        self._reply_seq += 1
        if turn is not None:
            turn.said = reply.text
            turn.action = reply.kind
            now = self.clock.now_ms()
            if turn.speech_end_ms is None:  # a silence, a failure: nobody just spoke
                self.wait.start(now, unprompted=True)
            else:
                self.wait.start(turn.speech_end_ms)
            self._waiting_turn = turn
            # Fillers may have played before the turn was decided (slow recognition).
            turn.fillers = self.wait.fillers
            if self.wait.first_sound_ms is not None and turn.speech_end_ms is not None:
                turn.first_audio_ms = self.wait.first_sound_ms - turn.speech_end_ms
        elif not self.wait.waiting:
            # The bot speaks on its own (greeting, staff not reached): a synthesiser that
            # stalls here must not leave the caller in silence either.
            self.wait.start(self.clock.now_ms(), unprompted=True)
            self._waiting_turn = None
        pieces = await plan_pieces(reply.parts, lambda text: self.voice.ready(text, self.rate))
        stream = ReplyStream(
            reply,
            self._reply_seq,
            pieces,
            clock=self.clock,
            render=lambda text: self.voice.clip(text, self.rate),
            rate=self.rate,
            interruptible=reply.next is Next.LISTEN,
        )
        self._replies[self._reply_seq] = (reply, turn)
        self._streams.append(stream)
        await stream.start()
        await self._take_rendered(stream)

    async def poll(self) -> None:
        """Queue whatever has been rendered since the last frame."""
        for stream in list(self._streams):
            await self._take_rendered(stream)

    async def _take_rendered(self, stream: ReplyStream) -> None:
        while stream.ready():
            try:
                utterance = await stream.take()
            except Exception as exc:
                stream.cancel()
                self._streams.remove(stream)
                await self._failed(stream, exc)
                return
            self.playout.enqueue(utterance)
        if stream.finished and stream in self._streams:
            self._streams.remove(stream)

    async def _failed(self, stream: ReplyStream, exc: Exception) -> None:
        log.error("call %s: speech synthesis failed: %s", self.call_id, exc)
        now = self.clock.now_ms()
        self.events.emit(
            ComponentFailed(call_id=self.call_id, t_ms=now, component="synthesizer", error=str(exc))
        )
        if stream.reply.kind == "failure":
            # The apology cannot be spoken whole: hand over after what is already queued
            # of it, or at once, without words; never dead air.
            queued = self.playout.queued(stream.reply_id)
            if queued:
                queued[-1].last = True
            else:
                await self._reply_done(stream.reply)
            return
        _, turn = self._replies.get(stream.reply_id, (None, None))
        await self._synthesis_failed(stream.reply, turn)

    def pending_apology(self) -> Reply | None:
        """An apology still being rendered, if any."""
        return next((s.reply for s in self._streams if s.reply.kind == "failure"), None)

    def stop(self, barged_in: bool) -> set[int]:
        """Stop speaking and rendering; returns the ids of the replies cut short.

        A caller barging in stops what may be interrupted (a filler, a reply that listens
        next), never a reply that hands over or hangs up, even while a filler covers its
        rendering: the call would otherwise neither go on nor end.
        """
        keep = [s for s in self._streams if barged_in and not s.interruptible]
        dropped = self.playout.cancel(keep={s.reply_id for s in keep})
        for stream in self._streams:
            if stream not in keep:
                stream.cancel()
        self._streams = keep
        if dropped:
            self.events.emit(
                BotSpeechStopped(
                    call_id=self.call_id, t_ms=self.clock.now_ms(), barged_in=barged_in
                )
            )
        return {u.reply_id for u in dropped}

    def close(self) -> None:
        """The call has ended: drop rendering still under way."""
        for stream in self._streams:
            stream.cancel()
        self._streams.clear()
        self.wait.cancel()

    # -- the caller waiting ----------------------------------------------------------------
    async def load_fillers(self) -> None:
        """The fillers' audio in memory before the first question.

        They are prompts, rendered before the service takes calls. Should one be missing
        (a cache wiped while running), it is rendered in the background: the greeting
        never waits for a filler.
        """
        for text in FILLERS.values():
            if await self.voice.ready(text, self.rate):
                self._fillers[text] = trimmed(await self.voice.clip(text, self.rate))
            else:
                self._filler_jobs[text] = await Job.start(
                    self.clock, self.voice.clip(text, self.rate)
                )

    def _filler(self, text: str) -> np.ndarray | None:
        clip = self._fillers.get(text)
        job = self._filler_jobs.get(text)
        if clip is None and job is not None and job.done():
            del self._filler_jobs[text]
            try:
                clip = self._fillers[text] = trimmed(job.result())
            except Exception:  # a call without fillers still works; the reply will come
                log.exception("call %s: filler %r could not be rendered", self.call_id, text)
        return clip

    def fill_silence(self, listening: bool = False) -> WaitAction:
        """Queue a filler if the caller has waited long enough; the call acts on GIVE_UP.

        ``listening``: the caller may go on (a half sentence is held), so only the
        acknowledgement, which is also what a listener says to let someone go on.
        """
        action = self.wait.due(self.clock.now_ms(), self.playout.speaking)
        if action not in FILLERS or (listening and action is not WaitAction.ACKNOWLEDGE):
            return WaitAction.NOTHING if action in FILLERS else action
        text = FILLERS[action]
        clip = self._filler(text)
        if clip is not None:
            self.wait.played_filler()
            if self._waiting_turn is not None:
                self._waiting_turn.fillers = self.wait.fillers
            self.playout.enqueue(Utterance(clip, text, FILLER, reply_id=0))
        return action

    # -- playout -------------------------------------------------------------------------
    async def play_frame(self, transport: CallTransport) -> None:
        """Send the next 20 ms of bot audio; tell observers what started and finished."""
        now = self.clock.now_ms()
        tick = self.playout.next_frame()
        for utt in tick.finished:  # a filler that ended before the reply began, in order
            if utt.kind == FILLER and utt not in tick.started:
                self._filler_ended(now)
        for utt in tick.started:
            self._started(utt, now)
        if self._should_send(tick.frame, now):
            await transport.send(AudioFrame.from_samples(tick.frame, self.rate, now))
        end = now + FRAME_MS
        for utt in tick.finished:
            if utt.kind == FILLER:
                if utt in tick.started:
                    self._filler_ended(end)
                continue
            reply, _ = self._replies.get(utt.reply_id, (None, None))
            if reply is not None and utt.last:
                self.events.emit(BotSpeechStopped(call_id=self.call_id, t_ms=end))
                await self._reply_done(reply)
            elif not self.playout.speaking and any(
                s.reply_id == utt.reply_id for s in self._streams
            ):
                self.wait.start(end, mid_reply=True)  # the next sentence is not ready yet

    def _should_send(self, frame: np.ndarray, now: float) -> bool:
        """Whether to send this frame: always on a virtual clock (recorded calls keep every
        frame); live, not when it is digital silence and the audio already sent has not
        played yet by more than ``BACKLOG_SLACK_MS`` (the transport would queue it)."""
        if not self.clock.realtime:
            return True
        backlog = 0.0 if self._played_until_ms is None else self._played_until_ms - now
        if backlog > BACKLOG_SLACK_MS and not frame.any():
            self.silence_skipped += 1
            return False
        self._played_until_ms = max(backlog, 0.0) + now + FRAME_MS
        return True

    def _started(self, utt: Utterance, now: float) -> None:
        if utt.kind == FILLER:
            waited = None if self.wait.since_ms is None else now - self.wait.since_ms
            if self.wait.first_sound_ms is None:
                self.wait.first_sound_ms = now
            turn = self._waiting_turn
            if turn is not None and turn.first_audio_ms is None and turn.speech_end_ms is not None:
                turn.first_audio_ms = now - turn.speech_end_ms
            self.events.emit(
                BotSpeechStarted(
                    call_id=self.call_id, t_ms=now, text=utt.text, kind=FILLER, latency_ms=waited
                )
            )
            return
        self.wait.heard(now)
        self._waiting_turn = None
        if utt.part != 0:
            return
        reply, turn = self._replies.get(utt.reply_id, (None, None))
        latency = turn.mark_reply_started(now) if turn is not None else None
        self.events.emit(
            BotSpeechStarted(
                call_id=self.call_id,
                t_ms=now,
                text=reply.text if reply else utt.text,
                kind=utt.kind,
                latency_ms=latency,
            )
        )

    def _filler_ended(self, at_ms: float) -> None:
        self.events.emit(BotSpeechStopped(call_id=self.call_id, t_ms=at_ms))
        self.wait.filler_finished(at_ms)
