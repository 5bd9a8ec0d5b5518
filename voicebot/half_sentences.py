"""Half sentences: a caller who pauses mid-sentence is not interrupted, and is heard whole.

Two cases. A transcript that ends like an unfinished sentence (「〜んですが」) is held for a
moment in case the caller goes on; if they do, the held part and the rest are recognised
together. And speech that resumes right after a turn whose reply the caller has not really
heard yet (it had not started, or they talked over it) continues that turn: the turn is
undone and the whole sentence recognised again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicebot.asr.base import Transcript
from voicebot.endpointing import SpeechEnd

if TYPE_CHECKING:
    from voicebot.dialogue import Checkpoint
    from voicebot.turn import Turn

Held = tuple[Transcript, SpeechEnd, bool]  # transcript, the turn, whether speculative


@dataclass
class CommittedTurn:
    """The last caller turn the dialogue acted on, in case it must be undone."""

    speech_start_ms: float
    last_speech_ms: float
    checkpoint: Checkpoint  # the dialogue's state before the turn
    turn: Turn
    reply_id: int = 0


class HalfSentences:
    """Held half sentences and the last committed turn of one call."""

    def __init__(self, hold_ms: float, merge_window_ms: float) -> None:
        self.hold_ms = hold_ms
        self.merge_window_ms = merge_window_ms
        self.held: Held | None = None
        self.continue_from: float | None = None  # start of a sentence the caller resumed
        self.last: CommittedTurn | None = None
        self.interrupted: set[int] = set()  # reply ids cut short by barge-in

    def sentence_start(self, speech_start_ms: float) -> float:
        """Where the caller's current sentence began (earlier if they resumed one)."""
        starts = [speech_start_ms]
        if self.continue_from is not None:
            starts.append(self.continue_from)
        if self.held is not None:
            starts.append(self.held[1].speech_start_ms)
        return min(starts)

    def resumed(self, speech_start_ms: float, turns: list[Turn]) -> CommittedTurn | None:
        """The committed turn this speech continues, if any; the caller must undo it."""
        last = self.last
        if last is None or self.continue_from is not None:
            return None
        gap = speech_start_ms - last.last_speech_ms
        unheard = last.turn.reply_start_ms is None or last.reply_id in self.interrupted
        if gap <= self.merge_window_ms and unheard and last.turn in turns:
            self.continue_from = last.speech_start_ms
            self.last = None
            return last
        return None

    def go_on(self) -> None:
        """The caller spoke again after a held half sentence: it will be recognised whole."""
        if self.held is not None:
            self.continue_from = self.held[1].speech_start_ms
            self.held = None

    def should_hold(self, unfinished: bool, waited_ms: float, speaking_again: bool) -> bool:
        """Hold a transcript if the caller goes on, or may (it sounds unfinished)."""
        return speaking_again or (unfinished and waited_ms < self.hold_ms)

    def release(self, now_ms: float, caller_quiet: bool) -> Held | None:
        """The held transcript, once the caller has been quiet long enough after it."""
        if self.held is None or not caller_quiet:
            return None
        if now_ms - self.held[1].last_speech_ms < self.hold_ms:
            return None
        held, self.held = self.held, None
        return held
