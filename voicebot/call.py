"""One phone call, end to end: caller audio in, understanding, bot audio out.

The session is a short orchestrator driven by the caller's 20 ms frames. Each frame is
kept (``caller_audio``) and goes through VAD and endpointing (``turn_taking``); turn
events start recognition (``recognition_schedule``: speculatively at the first short
pause), half sentences are held or merged (``half_sentences``), the dialogue decides the
reply, and the responder (``responder``) renders it, queues it and plays one frame of bot
audio per caller frame, with fillers while a caller waits. The turn log (``turn_log``)
and the events record what happened without steering it.

Blocking work runs as ``Job``s: live on threads, recorded on a virtual clock that is
charged with the measured processing time (see ``voicebot.jobs``). The same code thus
serves SIP, WebRTC and recorded calls, and reports the latency a caller would have had.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from faq.sentence_end import looks_unfinished
from voicebot.asr.base import Recognizer, Transcript
from voicebot.caller_audio import CallerAudio
from voicebot.clock import Clock
from voicebot.conversation import Conversation
from voicebot.dialogue import Dialogue, Handover, Next, Reply
from voicebot.endpointing import (
    EndpointingConfig,
    NoInput,
    ShortPause,
    SpeechDiscarded,
    SpeechEnd,
    SpeechStart,
)
from voicebot.events import (
    CallEnded,
    CallerSpeechEnded,
    CallerSpeechStarted,
    CallStarted,
    ComponentFailed,
    EventSink,
    Recognized,
    TransferAnswered,
    TransferFailed,
    TransferRequested,
)
from voicebot.frames import AudioFrame, DtmfFrame
from voicebot.half_sentences import CommittedTurn, HalfSentences
from voicebot.recognition_schedule import RecognitionSchedule
from voicebot.responder import Responder
from voicebot.transport import CallTransport, TransferError
from voicebot.turn_log import CallResult, TurnLog
from voicebot.turn_taking import BargeIn, TurnTaking
from voicebot.understanding import Understanding
from voicebot.voice import Voice
from voicebot.waiting import WaitAction, WaitPolicy

__all__ = ["CallConfig", "CallResult", "CallSession", "TurnLog"]

log = logging.getLogger(__name__)


@dataclass
class CallConfig:
    """Per-call behaviour that is not dialogue: timing of turns and recognition."""

    endpointing: EndpointingConfig = field(default_factory=EndpointingConfig)
    yes_no_min_speech_ms: int = 150  # a short 「はい」 answers a confirmation
    preroll_ms: int = 200  # audio kept before the detected start of speech
    tail_ms: int = 100  # audio kept after the last speech frame
    speculative: bool = True  # recognise at the first short pause
    # A transcript that ends like an unfinished sentence (〜んですが、〜て) waits for this
    # much silence before the bot answers, in case the caller goes on.
    hold_incomplete_ms: int = 750
    # Speech resuming this soon after a turn, before its reply has played on, is the same
    # sentence: the turn is undone and the two parts are recognised together.
    merge_window_ms: int = 1000
    max_call_ms: float = 20 * 60 * 1000.0
    # Fillers while the caller waits for a late reply, and when to give up on it.
    waiting: WaitPolicy = field(default_factory=WaitPolicy)
    # A hang-up this soon after the reply to a question started is a caller who gave up
    # waiting, not one who heard the answer.
    abandon_within_ms: float = 3000.0


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
        self.config = config or CallConfig()
        self.call_id = call_id or uuid.uuid4().hex[:12]
        self.dialogue = dialogue or Dialogue(understanding)
        self.conversation = Conversation(self.dialogue, events, self.call_id, clock)
        self.caller: str | None = None  # the caller's number or address, when known
        rate = transport.sample_rate
        c = self.config
        keep = c.endpointing.max_utterance_ms + 2000
        self.audio = CallerAudio(rate, recognizer.sample_rate, keep, c.preroll_ms, c.tail_ms)
        self.turn_taking = TurnTaking(rate, c.endpointing)
        self.recognition = RecognitionSchedule(recognizer, clock, self.audio)
        self.sentences = HalfSentences(c.hold_incomplete_ms, c.merge_window_ms)
        self.responder = Responder(
            call_id=self.call_id,
            voice=voice,
            clock=clock,
            rate=rate,
            events=events,
            waiting=c.waiting,
            reply_done=self._after_reply,
            synthesis_failed=self._synthesis_failed,
        )
        self.outcome: str | None = None
        self.handover: Handover | None = None

    # -- main loop -----------------------------------------------------------------------
    async def run(self) -> CallResult:
        name = self.transport.name
        self._emit(CallStarted, t_ms=0.0, transport=name, caller=self.caller)
        await self.responder.load_fillers()
        await self._say(self.conversation.start(), turn=None)
        try:
            while self.outcome is None:
                frame = await self.transport.receive()
                if frame is None:
                    waiting = self.responder.wait.waiting or self.recognition.busy
                    waiting = waiting or self.sentences.held is not None
                    self.outcome = self.conversation.hang_up_outcome(
                        waiting, self.config.abandon_within_ms
                    )
                elif isinstance(frame, DtmfFrame):
                    await self._on_dtmf(frame.digit)
                else:
                    await self._on_audio(frame)
                    if self.clock.now_ms() > self.config.max_call_ms:
                        log.warning("call %s: maximum call length reached", self.call_id)
                        await self._end("hung_up")
        finally:
            self.recognition.cancel()  # work still under way is of no use any more
            self.responder.close()
        duration = self.clock.now_ms()
        self._emit(CallEnded, t_ms=duration, outcome=self.outcome, duration_ms=duration)
        return CallResult(self.call_id, self.outcome, duration, self.turns, self.handover)

    @property
    def turns(self) -> list[TurnLog]:
        return self.conversation.turns

    async def _on_audio(self, frame: AudioFrame) -> None:
        start = frame.timestamp_ms if frame.timestamp_ms is not None else self.audio.end_ms
        if not self.clock.realtime:
            self.clock.advance_to(start + frame.duration_ms)
        self.audio.remember(start, frame.samples)
        for event in self.turn_taking.events(frame, start):
            await self._on_turn_event(event)
        if self.turn_taking.barge_in(self.clock.now_ms(), self.responder.playout) is BargeIn.STOP:
            self._stop_bot(barged_in=True)
        await self._poll()
        if self._caller_may_wait():
            listening = self.sentences.held is not None
            if self.responder.fill_silence(listening) is WaitAction.GIVE_UP:
                await self._give_up_waiting()
        await self.responder.play_frame(self.transport)

    # -- the caller's turns --------------------------------------------------------------
    async def _on_turn_event(self, event: object) -> None:
        now = self.clock.now_ms()
        endpointer = self.turn_taking.endpointer
        if isinstance(event, SpeechStart):
            endpointer.disarm_no_input()
            self._emit(CallerSpeechStarted, t_ms=now)
        elif isinstance(event, ShortPause) and self.config.speculative:
            self._resume_sentence(event.speech_start_ms)
            start = self.sentences.sentence_start(event.speech_start_ms)
            await self.recognition.speculate(start, event.last_speech_ms)
        elif isinstance(event, SpeechDiscarded):
            self.recognition.drop_speculation()
            if self._idle():
                endpointer.arm_no_input(now)
        elif isinstance(event, SpeechEnd):
            await self._on_speech_end(event)
        elif isinstance(event, NoInput) and self._idle():
            await self._say(*self.conversation.no_input())

    def _caller_may_wait(self) -> bool:
        """Not while the caller speaks, nor once the call is over."""
        return self.outcome is None and not self.turn_taking.caller_speaking

    def _idle(self) -> bool:
        """Nothing is being said, recognised or rendered: the bot is waiting for the caller."""
        return not self.responder.busy and not self.recognition.busy

    def _stop_bot(self, barged_in: bool) -> None:
        cut = self.responder.stop(barged_in)
        if barged_in:  # the caller did not hear these out (see HalfSentences.resumed)
            self.sentences.interrupted.update(cut)
        self.turn_taking.bot_stopped()

    def _resume_sentence(self, speech_start_ms: float) -> None:
        """Speech right after a turn whose reply has not really been heard continues it."""
        undone: CommittedTurn | None = self.sentences.resumed(speech_start_ms, self.turns)
        if undone is not None:
            log.info(
                "call %s: caller resumed the last sentence; recognising it whole", self.call_id
            )
            self.conversation.undo(undone.checkpoint, undone.turn)

    async def _on_speech_end(self, event: SpeechEnd) -> None:
        current = self.responder.playout.current
        if self.turn_taking.barging_in or (current is not None and current.interruptible):
            self._stop_bot(barged_in=True)
        self.sentences.go_on()  # a held half sentence goes on: recognise it whole
        self._resume_sentence(event.speech_start_ms)
        if not self.conversation.ended:
            self.responder.wait.start(event.last_speech_ms)  # the caller now waits for the bot
        self._emit(
            CallerSpeechEnded,
            t_ms=self.clock.now_ms(),
            speech_start_ms=event.speech_start_ms,
            last_speech_ms=event.last_speech_ms,
        )
        start = self.sentences.sentence_start(event.speech_start_ms)
        await self.recognition.recognise(start, event)

    async def _on_dtmf(self, digit: str) -> None:
        answer = self.conversation.key(digit)
        if answer is None:
            return
        if self.responder.playout.speaking:
            self._stop_bot(barged_in=True)
        await self._say(*answer)

    # -- recognition and the dialogue ----------------------------------------------------
    async def _poll(self) -> None:
        finished = self.recognition.take_finished()
        if finished is not None:
            await self._on_transcript(*finished)
        quiet = not self.turn_taking.caller_speaking
        held = self.sentences.release(self.clock.now_ms(), quiet)
        if held is not None:
            await self._commit(*held)
        await self.responder.poll()

    async def _on_transcript(self, job, end: SpeechEnd, speculative: bool) -> None:
        now = self.clock.now_ms()
        try:
            transcript: Transcript = job.result()
        except Exception as exc:
            log.exception("call %s: recognition failed", self.call_id)
            self._emit(ComponentFailed, t_ms=now, component="recognizer", error=str(exc))
            await self._say(*self.conversation.failure("recognizer", end.last_speech_ms))
            return
        text = transcript.text.strip()
        self._emit(
            Recognized, t_ms=now, text=text, final=True, processing_ms=transcript.processing_ms
        )
        waited = now - end.last_speech_ms
        speaking = self.turn_taking.caller_speaking
        if self.sentences.should_hold(looks_unfinished(text), waited, speaking):
            self.sentences.held = (transcript, end, speculative)  # the caller goes on, or may
            return
        await self._commit(transcript, end, speculative)

    async def _commit(self, transcript: Transcript, end: SpeechEnd, speculative: bool) -> None:
        """Act on a finished caller turn: dialogue, reply."""
        decided = self.conversation.heard(transcript, end, speculative)
        if decided is None:
            self.responder.wait.cancel()
            return
        reply, turn, checkpoint = decided
        self.sentences.continue_from = None
        endpointer = self.turn_taking.endpointer
        if endpointer.min_speech_ms != self.config.endpointing.min_speech_ms:
            endpointer.set_min_speech_ms(None)
        await self._say(reply, turn)
        reply_id = self.responder.last_reply_id
        self.sentences.last = CommittedTurn(
            end.speech_start_ms, end.last_speech_ms, checkpoint, turn, reply_id
        )

    # -- replies and their consequences -------------------------------------------------
    async def _say(self, reply: Reply, turn: TurnLog | None) -> None:
        if reply.expect_yes_no:
            self.turn_taking.endpointer.set_min_speech_ms(self.config.yes_no_min_speech_ms)
        await self.responder.say(reply, turn)

    async def _synthesis_failed(self, reply: Reply, turn: TurnLog | None) -> None:
        await self._say(self.dialogue.on_failure("synthesizer"), turn)  # same turn, new words

    async def _give_up_waiting(self) -> None:
        """The reply has stalled far too long: drop it, apologise and hand over."""
        component = "recognizer" if self.recognition.busy else "synthesizer"
        log.warning("call %s: the %s stalled; handing over", self.call_id, component)
        self._emit(ComponentFailed, t_ms=self.clock.now_ms(), component=component, error="stalled")
        self.recognition.cancel()
        apology = self.responder.pending_apology()
        self._stop_bot(barged_in=False)
        self.responder.wait.cancel()
        if apology is not None:  # not even the apology can be rendered: hand over without words
            await self._after_reply(apology)
            return
        await self._say(*self.conversation.failure(component, self.clock.now_ms()))

    async def _after_reply(self, reply: Reply) -> None:
        if reply.next is Next.LISTEN:
            self.turn_taking.endpointer.arm_no_input(self.clock.now_ms())
        elif reply.next is Next.HANGUP:
            await self._end("completed")
        elif reply.next is Next.TRANSFER:
            await self._transfer(reply.handover)

    async def _transfer(self, handover: Handover | None) -> None:
        self.handover = handover
        summary = handover.as_dict() if handover else {}
        reason = summary.get("reason", "")
        self._emit(TransferRequested, t_ms=self.clock.now_ms(), reason=reason, summary=summary)
        try:
            target = await self.transport.transfer(handover)
        except TransferError as exc:
            log.warning("call %s: transfer failed: %s", self.call_id, exc)
            self._emit(TransferFailed, t_ms=self.clock.now_ms(), reason=str(exc))
            await self._say(self.dialogue.on_transfer_failed(), turn=None)
            return
        self._emit(TransferAnswered, t_ms=self.clock.now_ms(), target=target)
        self.outcome = "transferred"

    async def close_for_shutdown(self) -> None:
        """The service is stopping: stop listening, tell the caller, hand over or hang up.

        Called from outside the call's own task; the reply is played by the call loop as
        usual, so the caller hears every word before the line is handed over or closed.
        """
        if self.outcome is not None:
            return
        self.recognition.drop_speculation()
        self._stop_bot(barged_in=False)
        await self._say(self.dialogue.on_shutdown(), turn=None)

    async def _end(self, outcome: str) -> None:
        self.outcome = outcome
        await self.transport.hangup()

    def _emit(self, kind, **fields) -> None:
        self.events.emit(kind(call_id=self.call_id, **fields))
