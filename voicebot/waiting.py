"""The caller waiting for the bot: when to fill the silence, and when to give up.

A caller who has finished a question and hears nothing for more than a second or two
wonders whether the line is dead, and hangs up or calls again; both cost the city more
than a transfer. So from the moment the caller stops speaking (or a streamed answer runs
dry between sentences) until the bot's reply is heard, this watch says when a short
pre-rendered filler is due: a quick 「はい。」 first, as a person on the phone would say
it, then 「少々お待ちください。」, then 「もうしばらくお待ちください。」; and when the wait
has gone on so long that the bot should apologise and hand over instead of keeping the
caller on the line. It only decides; the call plays.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class WaitAction(Enum):
    """What the call should do about a caller who is waiting."""

    NOTHING = "nothing"
    ACKNOWLEDGE = "acknowledge"  # 「はい。」: the caller was heard
    FILLER = "filler"  # 「少々お待ちください。」
    FILLER_AGAIN = "filler_again"  # a later one, or one in the middle of an answer
    GIVE_UP = "give_up"  # apologise and hand over


@dataclass
class WaitPolicy:
    """Timing of fillers; every value in milliseconds of call time."""

    # Silence after the caller's question before 「はい。」. The caller's silence starts
    # earlier than the endpointer's last speech (VAD hangover and the inbound media path,
    # 0.27 s median on SIP) and ends later than the bot's first frame (the outbound path,
    # 0.14 s), so 450 ms here is about 0.85 s as the caller hears it (bench/soak.py); at
    # 500 ms a loaded 2-core node let one caller in a soak hear 1.0 s of silence (the
    # inbound path slower than its median), with no margin left below the second.
    ack_after_ms: float = 450.0
    # Silence after a filler, or between two sentences of an answer, before the next one;
    # here what the bot plays is what the caller hears, shifted.
    filler_after_ms: float = 600.0
    # A wait this long without the reply starting is a stall: apologise and hand over.
    give_up_after_ms: float = 12000.0


class WaitWatch:
    """Tracks one wait at a time: started by a finished caller turn, ended by the reply."""

    def __init__(self, policy: WaitPolicy | None = None) -> None:
        self.policy = policy or WaitPolicy()
        self.since_ms: float | None = None  # when the caller started waiting
        self.silent_since_ms: float | None = None  # start of the current silence
        self.fillers = 0  # fillers played in this wait
        self.mid_reply = False  # part of the reply has been heard already
        self.first_sound_ms: float | None = None  # when the first filler of this wait began
        self.unprompted = False  # the bot speaks without a caller turn to acknowledge

    @property
    def waiting(self) -> bool:
        return self.since_ms is not None

    def start(self, at_ms: float, mid_reply: bool = False, unprompted: bool = False) -> None:
        """The caller now waits for the bot (their turn ended, or an answer ran dry).

        ``unprompted``: the bot speaks on its own (the greeting, the news that staff could
        not be reached); no 「はい。」, which would answer words nobody said, but the wait is
        filled and bounded all the same. A wait already under way goes on: its fillers are
        already counted. Only a caller who spoke while the bot's own words were late starts
        a caller's wait within it (「はい。」 first), still bounded by the earlier start.
        """
        if self.since_ms is not None:
            if self.unprompted and not unprompted:
                self.silent_since_ms = at_ms
                self.fillers = 0
                self.mid_reply = self.unprompted = False
                self.first_sound_ms = None
            return
        self.since_ms = self.silent_since_ms = at_ms
        self.fillers = 0
        self.mid_reply = mid_reply
        self.unprompted = unprompted
        self.first_sound_ms = None

    def heard(self, at_ms: float) -> None:
        """Bot audio that is not a filler started: the wait is over."""
        self.since_ms = self.silent_since_ms = None
        self.fillers = 0
        self.mid_reply = False
        self.unprompted = False
        self.first_sound_ms = None

    def filler_finished(self, at_ms: float) -> None:
        """A filler ended and the reply is still not playing: silence starts again."""
        if self.since_ms is not None:
            self.silent_since_ms = at_ms

    def cancel(self) -> None:
        """Nothing is owed any more (the call ended, or the caller's words need no reply)."""
        self.heard(0.0)

    def due(self, now_ms: float, bot_speaking: bool) -> WaitAction:
        """What to do at ``now_ms``; call once per frame while the bot may owe a reply."""
        if self.since_ms is None or bot_speaking or self.silent_since_ms is None:
            return WaitAction.NOTHING
        # A silence cannot have begun after now. A live call's caller frames are stamped by
        # count; when the transport filled a stall with silence and the late frames came
        # after it, their stamps run ahead of the clock, and the filler would be held back
        # by as much.
        self.since_ms = min(self.since_ms, now_ms)
        self.silent_since_ms = min(self.silent_since_ms, now_ms)
        if now_ms - self.since_ms >= self.policy.give_up_after_ms:
            return WaitAction.GIVE_UP
        first = self.fillers == 0 and not self.mid_reply and not self.unprompted
        due = self.policy.ack_after_ms if first else self.policy.filler_after_ms
        if now_ms - self.silent_since_ms < due:
            return WaitAction.NOTHING
        if first:
            return WaitAction.ACKNOWLEDGE
        if self.fillers == (0 if self.unprompted else 1) and not self.mid_reply:
            return WaitAction.FILLER
        return WaitAction.FILLER_AGAIN

    def played_filler(self) -> None:
        """A filler was queued; the silence it ends is accounted for."""
        self.fillers += 1
        self.silent_since_ms = None
