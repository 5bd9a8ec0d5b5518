"""The dialogue's side of a call: every caller turn decided, logged and announced once.

The call hands over what was heard (a transcript, a key, silence, a failure); this asks the
dialogue for the reply, times the turn the dialogue opened (``Turn``) and tells observers what was
decided (``IntentDecided``). Undoing a turn (the caller went on with the same sentence)
happens here too, so the call never reaches into the dialogue's state.
"""

from __future__ import annotations

import logging

from voicebot.asr.base import Transcript
from voicebot.clock import Clock
from voicebot.dialogue import Checkpoint, Dialogue, Reply, State
from voicebot.endpointing import SpeechEnd
from voicebot.events import ComponentFailed, EventSink
from voicebot.turn import Turn
from voicebot.turn_log import intent_decided

log = logging.getLogger(__name__)


class Conversation:
    """One call's dialogue and the log of its turns."""

    def __init__(self, dialogue: Dialogue, events: EventSink, call_id: str, clock: Clock) -> None:
        self.dialogue = dialogue
        self.events = events
        self.call_id = call_id
        self.clock = clock
        self.turns: list[Turn] = []

    @property
    def ended(self) -> bool:
        """The bot is saying its last words (goodbye, transfer notice): nothing to decide."""
        return self.dialogue.state is State.ENDED

    def start(self) -> Reply:
        return self.dialogue.start()

    def prepare(self, transcript: Transcript) -> None:
        """Do the work of understanding ``transcript`` that does not depend on the dialogue's
        state, so that ``heard`` finds it done (blocking; for a worker thread).

        Matching every hypothesis and rating the chosen one against the audio take tens of
        milliseconds of CPU; on the event loop they would hold up every call's audio. The
        results are kept by the matcher and by the transcript's ratings.
        """
        text = transcript.text.strip()
        if not text or self.ended:
            return
        t = transcript
        self.dialogue.understanding.understand(text, t.alternatives, t.confidence, t.unprompted)

    def heard(
        self, transcript: Transcript, end: SpeechEnd, speculative: bool
    ) -> tuple[Reply, Turn, Checkpoint] | None:
        """The reply to a recognised turn, its log entry and a checkpoint to undo it.

        None after the end of the dialogue: the words are ignored (and never logged, they
        may hold personal data).
        """
        text = transcript.text.strip()
        if self.ended:
            log.info(
                "call %s: ignoring speech after the end of the dialogue (%d characters)",
                self.call_id,
                len(text),
            )
            return None
        checkpoint = self.dialogue.checkpoint()
        t = transcript
        reply = (
            self.dialogue.on_utterance(text, t.alternatives, t.confidence, t.unprompted)
            if text
            else self.dialogue.on_noise()
        )
        turn = self._log(reply, end.last_speech_ms)
        turn.asr_ms, turn.speculative = transcript.processing_ms, speculative
        self.events.emit(intent_decided(self.call_id, self.clock.now_ms(), text, turn, reply))
        return reply, turn, checkpoint

    def key(self, digit: str) -> tuple[Reply, Turn] | None:
        """The reply to a key press, if the key means anything now."""
        reply = self.dialogue.on_dtmf(digit)
        if reply is None:
            return None
        return reply, self._log(reply, self.clock.now_ms())

    def no_input(self) -> tuple[Reply, Turn]:
        """The caller said nothing for a while."""
        reply = self.dialogue.on_no_input()
        return reply, self._log(reply, None)

    def failure(self, component: str, at_ms: float | None) -> tuple[Reply, Turn]:
        """A component failed or stalled: the apology and handover. ``at_ms``: the end
        of the caller speech it failed on, if any."""
        reply = self.dialogue.on_failure(component)
        return reply, self._log(reply, at_ms)

    def undo(self, checkpoint: Checkpoint, turn: Turn) -> None:
        """Forget a turn: the caller went on with the same sentence."""
        checkpoint.restore()
        self.turns.remove(turn)

    def _log(self, reply: Reply, at_ms: float | None) -> Turn:
        """The turn the dialogue opened for this input, timed from ``at_ms``, in the log."""
        turn = reply.turn
        if turn is None:  # every caller input opens a turn; a reply without one is a bug
            raise RuntimeError(f"the dialogue's {reply.kind!r} reply names no caller turn")
        turn.speech_end_ms = at_ms
        self.turns.append(turn)
        return turn

    def line_closed(self, failure: str | None, waiting: bool, abandon_within_ms: float) -> str:
        """The outcome of a call whose line closed: ``abandoned`` if a failure on our side
        cut it (``failure`` says which), else how the caller hung up."""
        if failure is None:
            return self.hang_up_outcome(waiting, abandon_within_ms)
        log.warning("call %s: the line was cut: %s", self.call_id, failure)
        now = self.clock.now_ms()
        self.events.emit(
            ComponentFailed(call_id=self.call_id, t_ms=now, component="transport", error=failure)
        )
        return "abandoned"

    def hang_up_outcome(self, waiting: bool, abandon_within_ms: float) -> str:
        """``hung_up_waiting`` if the caller gave up waiting for the bot, else ``hung_up``.

        Waiting means a question whose reply has not started, or started less than
        ``abandon_within_ms`` ago (a caller who hangs up that early did not hear it).
        """
        if waiting:
            return "hung_up_waiting"
        now = self.clock.now_ms()
        for turn in reversed(self.turns):
            if turn.speech_end_ms is None:
                continue
            started = turn.reply_start_ms
            recent = started is not None and now - started < abandon_within_ms
            if recent and turn.action != "goodbye":  # a goodbye: nothing left to wait for
                return "hung_up_waiting"
            break
        return "hung_up"
