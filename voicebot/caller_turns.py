"""The caller's side of a call: from turn events to a decided reply.

Turn events (``turn_taking``) start recognition (``recognition_schedule``); a finished
transcript is held if it sounds like half a sentence (``half_sentences``), and a turn the
caller went on with is undone and recognised whole; the rest goes to the conversation,
whose reply is handed back to the call to be said. Interrupting the bot (barge-in, a key,
a stall) is here too, because what the caller did not hear decides whether a sentence
they resume is one turn or two.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from faq.sentence_end import looks_unfinished
from voicebot.asr.base import Transcript
from voicebot.clock import Clock
from voicebot.conversation import Conversation
from voicebot.dialogue import Reply
from voicebot.endpointing import (
    NoInput,
    ShortPause,
    SpeechDiscarded,
    SpeechEnd,
    SpeechResumed,
    SpeechStart,
)
from voicebot.events import (
    CallerSpeechEnded,
    CallerSpeechStarted,
    ComponentFailed,
    EventSink,
    Recognized,
)
from voicebot.half_sentences import CommittedTurn, HalfSentences
from voicebot.jobs import Job
from voicebot.recognition_schedule import RecognitionSchedule
from voicebot.responder import Responder
from voicebot.turn import Turn
from voicebot.turn_taking import TurnTaking

log = logging.getLogger(__name__)

Say = Callable[[Reply, Turn | None], Awaitable[None]]


class CallerTurns:
    """Turns of one caller: recognised, held or merged, and decided once."""

    def __init__(
        self,
        *,
        call_id: str,
        clock: Clock,
        events: EventSink,
        turn_taking: TurnTaking,
        recognition: RecognitionSchedule,
        sentences: HalfSentences,
        conversation: Conversation,
        responder: Responder,
        speculative: bool,
        say: Say,
    ) -> None:
        self.call_id, self.clock, self.events = call_id, clock, events
        self.turn_taking = turn_taking
        self.recognition = recognition
        self.sentences = sentences
        self.conversation = conversation
        self.responder = responder
        self.speculative = speculative
        self._say = say

    @property
    def waiting(self) -> bool:
        """The caller waits for the bot: a reply owed, being recognised, or a held sentence."""
        busy = self.responder.wait.waiting or self.recognition.busy
        return busy or self.sentences.held is not None

    def idle(self) -> bool:
        """Nothing is being said, recognised or rendered: the bot is waiting for the caller."""
        return not self.responder.busy and not self.recognition.busy

    def stop_bot(self, barged_in: bool) -> None:
        """Stop the bot's speech; a barged-in reply counts as not heard."""
        cut = self.responder.stop(barged_in)
        if barged_in:  # the caller did not hear these out (see HalfSentences.resumed)
            self.sentences.interrupted.update(cut)
        self.turn_taking.bot_stopped()

    async def give_up(self) -> Reply | None:
        """The reply has stalled far too long: drop it, apologise and hand over.

        Returns the apology reply if not even that can be rendered: the call then hands
        over without words.
        """
        component = "recognizer" if self.recognition.busy else "synthesizer"
        log.warning("call %s: the %s stalled; handing over", self.call_id, component)
        now = self.clock.now_ms()
        self._emit(
            ComponentFailed(call_id=self.call_id, t_ms=now, component=component, error="stalled")
        )
        self.recognition.cancel()
        apology = self.responder.pending_apology()
        self.stop_bot(barged_in=False)
        self.responder.wait.cancel()
        if apology is not None:
            return apology
        # Nobody just spoke: the apology's own wait is the bot's (no 「はい。」 before it).
        await self._say(*self.conversation.failure(component, None))
        return None

    async def on_event(self, event: object) -> None:
        """One turn event from the endpointer."""
        now = self.clock.now_ms()
        endpointer = self.turn_taking.endpointer
        if isinstance(event, SpeechStart):
            endpointer.disarm_no_input()
            self._emit(CallerSpeechStarted(call_id=self.call_id, t_ms=now))
        elif isinstance(event, ShortPause) and self.speculative:
            self._resume_sentence(event.speech_start_ms)
            start = self.sentences.sentence_start(event.speech_start_ms)
            await self.recognition.speculate(start, event.last_speech_ms)
        elif isinstance(event, SpeechResumed):
            self.recognition.drop_speculation()  # stale: stop its work now, not at the end
        elif isinstance(event, SpeechDiscarded):
            self.recognition.drop_speculation()
            if self.idle():
                endpointer.rearm_no_input(now)
        elif isinstance(event, SpeechEnd):
            await self._on_speech_end(event)
        elif isinstance(event, NoInput) and self.idle():
            await self._say(*self.conversation.no_input())

    async def poll(self) -> None:
        """Act on a finished recognition, or on a held half sentence the caller left."""
        finished = self.recognition.take_finished()
        if finished is not None:
            await self._on_transcript(*finished)
        quiet = not self.turn_taking.caller_speaking
        held = self.sentences.release(self.clock.now_ms(), quiet)
        if held is not None:
            await self._commit(*held)

    def _resume_sentence(self, speech_start_ms: float) -> None:
        """Speech right after a turn whose reply has not really been heard continues it."""
        undone: CommittedTurn | None = self.sentences.resumed(
            speech_start_ms, self.conversation.turns
        )
        if undone is not None:
            log.info(
                "call %s: caller resumed the last sentence; recognising it whole", self.call_id
            )
            self.conversation.undo(undone.checkpoint, undone.turn)

    async def _on_speech_end(self, event: SpeechEnd) -> None:
        current = self.responder.playout.current
        if self.turn_taking.barging_in or (current is not None and current.interruptible):
            self.stop_bot(barged_in=True)
        self.sentences.go_on()  # a held half sentence goes on: recognise it whole
        self._resume_sentence(event.speech_start_ms)
        if not self.conversation.ended:
            self.responder.wait.start(event.last_speech_ms)  # the caller now waits for the bot
        self._emit(
            CallerSpeechEnded(
                call_id=self.call_id,
                t_ms=self.clock.now_ms(),
                speech_start_ms=event.speech_start_ms,
                last_speech_ms=event.last_speech_ms,
            )
        )
        start = self.sentences.sentence_start(event.speech_start_ms)
        await self.recognition.recognise(start, event)

    async def _on_transcript(self, job: Job[Transcript], end: SpeechEnd, speculative: bool) -> None:
        now = self.clock.now_ms()
        try:
            transcript = job.result()
        except Exception as exc:
            log.exception("call %s: recognition failed", self.call_id)
            failed = ComponentFailed(
                call_id=self.call_id, t_ms=now, component="recognizer", error=str(exc)
            )
            self._emit(failed)
            await self._say(*self.conversation.failure("recognizer", end.last_speech_ms))
            return
        text = transcript.text.strip()
        ms = transcript.processing_ms
        self._emit(
            Recognized(call_id=self.call_id, t_ms=now, text=text, final=True, processing_ms=ms)
        )
        waited = now - end.last_speech_ms
        speaking = self.turn_taking.caller_speaking
        if self.sentences.should_hold(looks_unfinished(text), waited, speaking):
            self.sentences.held = (transcript, end, speculative)  # the caller goes on, or may
            return
        await self._commit(transcript, end, speculative)

    async def _commit(self, transcript: Transcript, end: SpeechEnd, speculative: bool) -> None:
        """Act on a finished caller turn: dialogue, reply. Its understanding was prepared
        with the recognition (``RecognitionSchedule.prepare``)."""
        decided = self.conversation.heard(transcript, end, speculative)
        if decided is None:
            if not self.responder.busy:  # a reply still on its way stays bounded
                self.responder.wait.cancel()
            return
        reply, turn, checkpoint = decided
        self.sentences.continue_from = None
        self.turn_taking.answered()
        await self._say(reply, turn)
        reply_id = self.responder.last_reply_id
        self.sentences.last = CommittedTurn(
            end.speech_start_ms, end.last_speech_ms, checkpoint, turn, reply_id
        )

    def _emit(self, event: object) -> None:
        self.events.emit(event)
