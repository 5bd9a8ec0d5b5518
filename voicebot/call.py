"""One phone call, end to end: caller audio in, understanding, bot audio out.

The session is a short orchestrator driven by the caller's 20 ms frames. Each frame is
kept (``caller_audio``) and goes through VAD and endpointing (``turn_taking``); the
caller's turns (``caller_turns``) are recognised, held or merged and decided by the
conversation; the responder (``responder``) renders the reply, queues it and plays one
frame of bot audio per caller frame, with fillers while a caller waits. What the reply
leads to (listen, hang up, hand over) is decided here. The turn log and the events
record what happened without steering it.

Blocking work runs as ``Job``s: live on threads, recorded on a virtual clock that is
charged with the measured processing time (see ``voicebot.jobs``). The same code thus
serves SIP, WebRTC and recorded calls, and reports the latency a caller would have had.
"""

from __future__ import annotations

import logging
import uuid

from voicebot.asr.base import Recognizer
from voicebot.call_config import CallConfig
from voicebot.caller_audio import CallerAudio
from voicebot.caller_turns import CallerTurns
from voicebot.clock import Clock
from voicebot.conversation import Conversation
from voicebot.dialogue import Dialogue, Handover, Next, Reply
from voicebot.events import CallEnded, CallStarted, EventSink
from voicebot.frames import AudioFrame, DtmfFrame
from voicebot.half_sentences import HalfSentences
from voicebot.recognition_schedule import RecognitionSchedule
from voicebot.responder import Responder
from voicebot.transfer import hand_over
from voicebot.transport import CallTransport
from voicebot.turn import Turn
from voicebot.turn_log import CallResult
from voicebot.turn_taking import BargeIn, TurnTaking
from voicebot.understanding import Understanding
from voicebot.voice import Voice
from voicebot.waiting import WaitAction

__all__ = ["CallConfig", "CallResult", "CallSession", "Turn"]

log = logging.getLogger(__name__)


class CallSession:
    """Runs one call over a transport until it is completed, transferred or hung up."""

    def __init__(
        self,
        *,
        transport: CallTransport,
        understanding: Understanding,
        recognizer: Recognizer,
        voice: Voice,
        events: EventSink,
        clock: Clock,
        config: CallConfig | None = None,
        dialogue: Dialogue | None = None,
        call_id: str | None = None,
    ):
        self.transport, self.events, self.clock = transport, events, clock
        c = self.config = config or CallConfig()
        self.call_id = call_id or uuid.uuid4().hex[:12]
        self.dialogue = dialogue or Dialogue(understanding)
        self.conversation = conversation = Conversation(self.dialogue, events, self.call_id, clock)
        self.caller: str | None = None  # the caller's number or address, when known
        rate, keep = transport.sample_rate, c.endpointing.max_utterance_ms + 2000
        self.audio = CallerAudio(rate, recognizer.sample_rate, keep, c.preroll_ms, c.tail_ms)
        self.turn_taking = TurnTaking(rate, c.endpointing)
        self.recognition = RecognitionSchedule(recognizer, clock, self.audio, conversation.prepare)
        self.recognition.hold_decoding(c.speculation_decode_after_ms, c.endpointing.end_silence_ms)
        self.responder = Responder(
            call_id=self.call_id,
            voice=voice,
            clock=clock,
            rate=rate,
            events=events,
            waiting=c.waiting,
            reply_done=self._after_reply,
            synthesis_failed=lambda _reply, turn: self._say(
                self.dialogue.on_failure("synthesizer"), turn
            ),
        )
        self.caller_turns = CallerTurns(
            call_id=self.call_id,
            clock=clock,
            events=events,
            turn_taking=self.turn_taking,
            recognition=self.recognition,
            sentences=HalfSentences(c.hold_incomplete_ms, c.merge_window_ms),
            conversation=self.conversation,
            responder=self.responder,
            speculative=c.speculative,
            say=self._say,
        )
        self.outcome: str | None = None
        self.handover: Handover | None = None

    @property
    def turns(self) -> list[Turn]:
        return self.conversation.turns

    async def run(self) -> CallResult:
        """Greet, then take the caller's frames until the call ends; returns what happened."""
        self._emit(CallStarted, t_ms=0.0, transport=self.transport.name, caller=self.caller)
        await self.responder.load_fillers()
        await self._say(self.conversation.start(), turn=None)
        try:
            while self.outcome is None:
                frame = await self.transport.receive()
                if frame is None:  # the caller hung up, or the line was cut
                    failure = getattr(self.transport, "failure", None)
                    waiting, within = self.caller_turns.waiting, self.config.abandon_within_ms
                    self.outcome = self.conversation.line_closed(failure, waiting, within)
                elif isinstance(frame, DtmfFrame):
                    await self._on_dtmf(frame.digit)
                else:
                    await self._on_audio(frame)
        finally:
            self.recognition.cancel()  # work still under way is of no use any more
            self.responder.close()
            self.turn_taking.close()
        duration = self.clock.now_ms()
        self._emit(CallEnded, t_ms=duration, outcome=self.outcome, duration_ms=duration)
        return CallResult(self.call_id, self.outcome, duration, self.turns, self.handover)

    async def _on_audio(self, frame: AudioFrame) -> None:
        """One caller frame: turn events, barge-in, finished work, fillers, one bot frame."""
        start = frame.timestamp_ms if frame.timestamp_ms is not None else self.audio.end_ms
        if not self.clock.realtime:
            self.clock.advance_to(start + frame.duration_ms)
        self.audio.remember(start, frame.samples)
        for event in self.turn_taking.events(frame, start):
            await self.caller_turns.on_event(event)
        if self.turn_taking.barge_in(self.clock.now_ms(), self.responder.playout) is BargeIn.STOP:
            self.caller_turns.stop_bot(barged_in=True)
        await self.caller_turns.poll()
        await self.responder.poll()
        if self.outcome is None and not self.turn_taking.caller_speaking:
            listening = self.caller_turns.sentences.held is not None
            if self.responder.fill_silence(listening) is WaitAction.GIVE_UP:
                unsaid = await self.caller_turns.give_up()
                if unsaid is not None:  # not even the apology renders: hand over without it
                    await self._after_reply(unsaid)
        await self.responder.play_frame(self.transport)
        if self.clock.now_ms() > self.config.max_call_ms and self.outcome is None:
            log.warning("call %s: maximum call length reached", self.call_id)
            await self._end("hung_up")

    async def _on_dtmf(self, digit: str) -> None:
        answer = self.conversation.key(digit)
        if answer is not None:
            if self.responder.playout.speaking:
                self.caller_turns.stop_bot(barged_in=True)
            await self._say(*answer)

    async def _say(self, reply: Reply, turn: Turn | None) -> None:
        if reply.expect_yes_no:
            self.turn_taking.expect_short_answer(self.config.yes_no_min_speech_ms)
        await self.responder.say(reply, turn)

    async def _after_reply(self, reply: Reply) -> None:
        """The reply has been played: listen again, hang up, or hand over."""
        if reply.next is Next.LISTEN:
            wait = self.config.held_no_input_ms if reply.patient else None
            self.turn_taking.endpointer.arm_no_input(self.clock.now_ms(), wait)
        elif reply.next is Next.HANGUP:
            await self._end("completed")
        elif reply.next is Next.TRANSFER:
            self.handover = reply.handover
            kw = {"call_id": self.call_id, "clock": self.clock, "events": self.events}
            if await hand_over(self.transport, reply.handover, **kw):
                self.outcome = "transferred"
            else:
                await self._say(self.dialogue.on_transfer_failed(), turn=None)

    async def close_for_shutdown(self) -> None:
        """The service is stopping: stop listening, tell the caller, hand over or hang up.

        Called from outside the call's own task; the reply is played by the call loop as
        usual, so the caller hears every word before the line is handed over or closed.
        """
        if self.outcome is None:
            self.recognition.drop_speculation()
            self.caller_turns.stop_bot(barged_in=False)
            await self._say(self.dialogue.on_shutdown(), turn=None)

    async def _end(self, outcome: str) -> None:
        self.outcome = outcome
        await self.transport.hangup()

    def _emit(self, kind, **fields) -> None:
        self.events.emit(kind(call_id=self.call_id, **fields))
