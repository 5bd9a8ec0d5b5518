"""The conversation of one call, as a small explicit state machine.

It takes what the caller said (text), pressed (DTMF) or failed to say, and returns
what the bot says next and where the call goes: keep listening, hand over to staff,
or hang up. It knows nothing of audio or transports, so every path can be tested
with plain strings, and the same rules hold on SIP, WebRTC and recorded calls.

It is the only author of the bot's words: the policy decides an action and an entry,
and every word spoken is built here from ``voicebot.prompts`` and the FAQ. Whatever
shows what the bot says (the call, ``voicebot ask``, the FAQ editor's "try a question")
takes ``Reply.text`` from here, so it is what a caller hears.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from faq.intents import ControlIntent, after_return, is_hold, still_waiting, yes_no
from faq.matcher import Match
from faq.normalize import nfkc
from voicebot import prompts
from voicebot.policy import BotAction, Decision, chosen, entry_action
from voicebot.turn import Turn
from voicebot.understanding import Understanding

DEFAULT_MAX_TURNS = 12
# Silences in a row after which the bot ends the call: the first is asked again, the
# second handed to staff; when staff cannot take it (out of hours, or the transfer failed)
# a line on which nobody speaks any more is not held open until the longest call.
SILENCES_TO_HANG_UP = 3
# A reply to 「AとBの、どちらについて…」 that names a position rather than a topic. Only
# short replies are read this way: 「後で」 inside a new question is not an answer.
ORDINAL_REPLY_MAX_CHARS = 12
FIRST_WORDS = (
    "前の",
    "前者",
    "最初",
    "はじめ",
    "初め",
    "一つ目",
    "ひとつめ",
    "1つ目",
    "1番",
    "一番目",
)
SECOND_WORDS = (
    "後の",
    "後ろ",
    "あとの",
    "後者",
    "二つ目",
    "ふたつめ",
    "2つ目",
    "2番",
    "二番",
)


class Away(NamedTuple):
    """Where a caller who asked for a moment stands when they next speak."""

    held: bool  # asked for a moment and not heard from since
    offered: bool  # the bot's last words offered to wait or asked whether they are ready


class Next(StrEnum):
    """Where the call goes after the bot has spoken."""

    LISTEN = "listen"
    TRANSFER = "transfer"
    HANGUP = "hangup"


class State(StrEnum):
    GREETING = "greeting"
    LISTENING = "listening"
    CONFIRMING = "confirming"  # waiting for yes/no on a candidate topic
    CHOOSING = "choosing"  # waiting for which of two close topics
    OFFERED_TRANSFER = "offered_transfer"  # after a redirect: yes means transfer
    ENDED = "ended"


@dataclass(frozen=True)
class Handover:
    """What staff see when a call is transferred: why, and what was said so far."""

    reason: (
        str  # caller_request, staff_topic, not_understood, failure, turn_limit, redirect_accepted
    )
    turns: list[Turn]
    topic: str | None = None  # FAQ title when a topic was identified

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "topic": self.topic,
            "turns": [t.summary() for t in self.turns],
        }


@dataclass(frozen=True)
class Reply:
    """What the bot says now, and what happens after.

    ``parts`` are spoken one after another; each is a fixed text (an answer, a prompt)
    so that its audio can be rendered ahead of time and cached.
    """

    parts: tuple[str, ...]
    kind: str  # greeting, answer, confirm, redirect, transfer, repeat, goodbye, reprompt, ...
    next: Next = Next.LISTEN
    decision: Decision | None = None
    handover: Handover | None = None
    expect_yes_no: bool = False
    # The caller asked for a moment: listen longer than usual before a silence counts.
    patient: bool = False
    turn: Turn | None = None  # the caller's turn this replies to (None: greeting, notices)

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """The conversation as it stood before a turn; ``restore()`` puts it back.

    A turn can turn out to be half a sentence (the caller goes on before the reply is
    heard): the call undoes it and recognises the whole sentence instead. What is saved
    is the dialogue's business; the call only keeps the object.
    """

    _dialogue: Dialogue
    _state: State
    _turns: tuple[Turn, ...]
    _misses: int
    _silences: int
    _last_said: tuple[str, ...] | None
    _pending: Decision | None
    _holding: bool
    _offered_wait: bool

    def restore(self) -> None:
        """Put the dialogue back as it was when this checkpoint was taken."""
        d = self._dialogue
        d.state = self._state
        d._turns = list(self._turns)
        d.misses = self._misses
        d.silences = self._silences
        d.last_said = self._last_said
        d._pending = self._pending
        d.holding = self._holding
        d._offered_wait = self._offered_wait


def choice_parts(first: str, second: str) -> tuple[str, ...]:
    """The choice question as separately spoken parts, each one rendered once per entry
    title (a sentence naming both titles would need audio for every pair)."""
    return (
        prompts.CHOICE_FIRST.format(title=first),
        prompts.CHOICE_SECOND.format(title=second),
        prompts.CHOICE_HOW,
    )


def confirm_parts(title: str) -> tuple[str, ...]:
    """「…についてのご質問でよろしいでしょうか。」 and how to answer it, apart: the second
    part is the same for every topic."""
    return (prompts.CONFIRM_TOPIC.format(title=title), prompts.CONFIRM_HOW)


class Dialogue:
    """One call's conversation. Not thread-safe; one instance per call."""

    def __init__(
        self,
        understanding: Understanding,
        max_turns: int = DEFAULT_MAX_TURNS,
        now: Callable[[], dt.datetime] | None = None,
    ):
        self.understanding = understanding
        self.max_turns = max_turns
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self.state = State.GREETING
        self._turns: list[Turn] = []
        self._turn: Turn | None = None  # the turn the current input opened
        self.misses = 0  # consecutive not-understood turns (or silences)
        self.silences = 0  # consecutive silences: the caller said and pressed nothing
        self.last_said: tuple[str, ...] | None = None
        self._pending: Decision | None = None  # topic awaiting confirmation
        self.holding = False  # the caller asked for a moment and has not spoken since
        self._offered_wait = False  # the last reply offered to wait or asked if ready
        # A hand-over failed in this call: the caller has been told to call again, and is
        # not put through the wait for staff a second time (nor a failure's hand-over).
        self.staff_unreachable = False

    # -- helpers -------------------------------------------------------------------------
    @property
    def city(self):
        return self.understanding.faq.city

    @property
    def turns(self) -> list[Turn]:
        """The caller's turns so far, as the handover shows them (a copy); a call gets
        each one as ``Reply.turn`` and undoes one with ``checkpoint()``."""
        return list(self._turns)

    @property
    def last_heard(self) -> str | None:
        """What the last caller turn was heard as: the recognised text the dialogue acted
        on (the n-best hypothesis it chose), 「[DTMF 0]」 for a key, "" for silence; None
        before the first turn."""
        return self._turns[-1].heard if self._turns else None

    def staff_available(self) -> bool:
        return self.city.business_hours.is_open(self._now())

    def _can_hand_over(self) -> bool:
        """Within office hours, and staff were not found unreachable earlier in the call."""
        return self.staff_available() and not self.staff_unreachable

    def _call_again(self) -> str:
        return prompts.CALL_AGAIN.format(office_hours=self.city.office_hours)

    def _out_of_hours(self) -> str:
        return prompts.OUT_OF_HOURS.format(office_hours=self.city.office_hours)

    def _say(self, parts: str | tuple[str, ...], kind: str, **kw: Any) -> Reply:
        parts = (parts,) if isinstance(parts, str) else parts
        turn = self._turn
        if turn is not None:  # the caller's turn is answered: say what the bot did
            turn.action, turn.said = kind, "".join(parts)
        reply = Reply(parts=parts, kind=kind, turn=turn, **kw)
        if kind not in ("repeat", "reprompt", "confirm", "choose", "hold", "hold_over", "resume"):
            self.last_said = reply.parts
        if reply.next is not Next.LISTEN:
            self.state = State.ENDED
        return reply

    def _transfer(self, reason: str, text: str, decision: Decision | None = None) -> Reply:
        topic = None
        if decision is not None and decision.faq_id:
            entry = self.understanding.faq.get(decision.faq_id)
            topic = entry.title if entry else None
        if not self._can_hand_over():
            return self._without_staff(decision, end_call=False)
        handover = Handover(reason=reason, turns=list(self._turns), topic=topic)
        return self._say(text, "transfer", next=Next.TRANSFER, decision=decision, handover=handover)

    def _without_staff(self, decision: Decision | None, end_call: bool) -> Reply:
        """Staff are needed and cannot be rung (out of hours, or found unreachable earlier
        in the call): when to call again, then another question, or at the turn limit
        goodbye rather than one more question with nothing left to give."""
        if self.staff_available():
            kind, said = "staff_unreachable", (prompts.STAFF_UNREACHABLE, self._call_again())
        else:
            kind, said = "out_of_hours", (self._out_of_hours(),)
        if end_call:
            return self._say((*said, prompts.GOODBYE), kind, next=Next.HANGUP, decision=decision)
        self.state = State.LISTENING
        self.misses = 0
        return self._say((*said, prompts.ANYTHING_ELSE), kind, decision=decision)

    def _open(self, heard: str, faq_id: str | None = None, score: float = 0.0) -> Turn:
        """A new caller turn; the reply the bot gives to this input reports on it."""
        self._turn = Turn(heard=heard, faq_id=faq_id, score=score)
        self._turns.append(self._turn)
        return self._turn

    def _record(self, text: str, decision: Decision) -> None:
        turn = self._open(text, decision.faq_id, round(decision.score, 4))
        turn.action = decision.action.value
        turn.choices = decision.choices
        turn.candidates = [
            {"faq_id": c.faq_id, "title": c.title, "score": c.score}
            for c in decision.candidates[:3]
        ]

    def checkpoint(self) -> Checkpoint:
        """The conversation as it stands, to undo the next turn with ``restore()``."""
        return Checkpoint(
            self,
            self.state,
            tuple(self._turns),
            self.misses,
            self.silences,
            self.last_said,
            self._pending,
            self.holding,
            self._offered_wait,
        )

    # -- inputs --------------------------------------------------------------------------
    def start(self) -> Reply:
        """The greeting: automated, may be wrong, how to reach staff."""
        self._turn = None
        self.state = State.LISTENING
        return self._say(prompts.GREETING, "greeting")

    def on_utterance(
        self,
        text: str,
        alternatives: Sequence[str] = (),
        heard_probability: float | None = None,
        unprompted: Mapping[str, float] | None = None,
    ) -> Reply:
        """The caller said ``text`` (as recognised; ``alternatives``: other hypotheses;
        ``heard_probability``: the recogniser's own probability for ``text``;
        ``unprompted``: each hypothesis' probability without the vocabulary hint)."""
        if self.state is State.ENDED:
            raise RuntimeError("the call has ended")
        self._turn = None
        self.silences = 0
        away = self._take_away()
        if self._questions() >= self.max_turns:
            decision = self.understanding.understand(text)[1]
            self._record(text, decision)
            if not self._can_hand_over():  # nobody to hand to: the call ends here
                return self._without_staff(decision, end_call=True)
            return self._transfer("turn_limit", prompts.TRANSFER, decision)

        if self.state is State.CHOOSING:
            return self._on_choice_reply(text, alternatives, heard_probability, unprompted, away)
        asked = self.state, self._pending
        if self.state in (State.CONFIRMING, State.OFFERED_TRANSFER):
            answer = self._answer_to_question(text, away, is_hold(text))
            if answer is not None:
                return self._on_yes_no(text, answer)
            # Neither yes nor no: the caller rephrased; treat it as a new question.
            self.state = State.LISTENING
            self._pending = None

        _, decision = self._understand(text, alternatives, heard_probability, unprompted, away)
        return self._on_line(decision, *asked, away.held) or self._act(decision)

    def on_dtmf(self, digit: str) -> Reply | None:
        """A key press: 0 reaches staff; 1/2 answer a confirmation. Others are ignored."""
        if self.state is State.ENDED:
            return None
        self._turn = None
        self.silences = 0
        answers = digit in ("1", "2") and self.state in (
            State.CHOOSING,
            State.CONFIRMING,
            State.OFFERED_TRANSFER,
        )
        if digit == "0" or answers:
            self._take_away()  # a key that acts ends the wait; another is ignored
        if digit == "0":
            self._open("[DTMF 0]", score=1.0)
            return self._transfer("caller_request", prompts.TRANSFER)
        if self.state is State.CHOOSING and digit in "12" and self._pending is not None:
            return self._deliver_choice(f"[DTMF {digit}]", self._pending.choices[int(digit) - 1])
        if self.state in (State.CONFIRMING, State.OFFERED_TRANSFER) and digit in "12":
            return self._on_yes_no(
                f"[DTMF {digit}]", ControlIntent.YES if digit == "1" else ControlIntent.NO
            )
        return None

    def on_noise(self) -> Reply:
        """Speech was heard but recognised as nothing (a rustle, a cough): silence, except
        while the caller is away fetching something, when the wait goes on."""
        if self.state is State.ENDED:
            raise RuntimeError("the call has ended")
        if not self.holding:
            return self.on_no_input()
        self._open("")  # logged, but no question: a long search does not reach the turn limit
        asking = self._pending is not None and self.state is not State.LISTENING
        return self._say(prompts.HOLD_STILL, "hold", expect_yes_no=asking, patient=True)

    def on_no_input(self) -> Reply:
        """The caller said nothing for the no-input time."""
        self._open("")
        if self.holding:  # the caller asked for a moment: ask once whether they are ready
            self.holding = False
            return self._hold_over()
        self.silences += 1
        if self.silences >= SILENCES_TO_HANG_UP:
            return self._say(
                (prompts.SILENT_LINE, prompts.GOODBYE), "silent_line", next=Next.HANGUP
            )
        return self._not_understood()

    def on_failure(self, component: str) -> Reply:
        """A component (recogniser, synthesiser, ...) failed: apologise and hand over."""
        self._open("")  # nothing was heard: the component failed the caller
        if not self.staff_available():
            parts = (prompts.APOLOGY_FAILURE_CLOSED, self._out_of_hours())
            return self._say(parts, "failure", next=Next.HANGUP)
        if self.staff_unreachable:
            parts = (prompts.APOLOGY_FAILURE_CLOSED, self._call_again(), prompts.GOODBYE)
            return self._say(parts, "failure", next=Next.HANGUP)
        handover = Handover(reason="failure", turns=list(self._turns))
        return self._say(prompts.APOLOGY_FAILURE, "failure", next=Next.TRANSFER, handover=handover)

    def on_shutdown(self) -> Reply:
        """The service is stopping: tell the caller and hand over (or give the hours)."""
        self._open("")
        if not self._can_hand_over():
            parts = (prompts.SHUTDOWN, self._call_again(), prompts.GOODBYE)
            return self._say(parts, "shutdown", next=Next.HANGUP)
        handover = Handover(reason="shutdown", turns=list(self._turns))
        return self._say(
            (prompts.SHUTDOWN, prompts.SHUTDOWN_TRANSFER),
            "shutdown",
            next=Next.TRANSFER,
            handover=handover,
        )

    def on_transfer_failed(self) -> Reply:
        """Staff could not be reached: say so, give the hours, and keep helping."""
        self._turn = None
        self.state = State.LISTENING
        self.misses = 0
        self._take_away()
        self.staff_unreachable = True
        text = prompts.TRANSFER_FAILED.format(office_hours=self.city.office_hours)
        return self._say((text, prompts.ANYTHING_ELSE), "transfer_failed")

    # -- decisions -----------------------------------------------------------------------
    def _on_yes_no(self, text: str, answer: ControlIntent) -> Reply:
        pending = self._pending
        offered = self.state is State.OFFERED_TRANSFER
        self.state = State.LISTENING
        self._pending = None
        self._open(text, pending.faq_id if pending else None, 1.0)
        if offered:
            if answer is ControlIntent.YES:
                return self._transfer("redirect_accepted", prompts.TRANSFER, pending)
            return self._say(prompts.ANYTHING_ELSE, "prompt")
        if answer is ControlIntent.NO or pending is None:
            self.misses += 1
            if self.misses >= 2:
                return self._transfer("not_understood", prompts.TRANSFER_AFTER_FAILURE, pending)
            return self._say(prompts.CONFIRM_DENIED, "reprompt")
        return self._deliver(pending)

    def _on_choice_reply(
        self,
        text: str,
        alternatives: Sequence[str],
        heard_probability: float | None,
        unprompted: Mapping[str, float] | None,
        away: Away,
    ) -> Reply:
        """The caller's reply to 「AとBの、どちらについて…」: a position (「前の方」), a
        topic's words (「還付金のほうです」), neither (「いいえ」), or a new question."""
        pending = self._pending
        self.state = State.LISTENING
        self._pending = None
        assert pending is not None
        hold = is_hold(text)  # 「前の書類を探しますので」 names no position
        position = None if hold else ordinal_reply(after_return(text))
        if position is not None:
            return self._deliver_choice(text, pending.choices[position])
        answer = self._answer_to_question(text, away, hold)
        if answer is not None:  # 「いいえ」: neither; 「はい」: does not say which
            self._open(text, score=1.0)
            self.misses += 1
            if self.misses >= 2:
                return self._transfer("not_understood", prompts.TRANSFER_AFTER_FAILURE, pending)
            if answer is ControlIntent.NO:
                return self._say(prompts.CONFIRM_DENIED, "reprompt")
            return self._offer_choice(pending)
        match, decision = self._understand(text, alternatives, heard_probability, unprompted, away)
        on_line = self._on_line(decision, State.CHOOSING, pending, away.held)
        if on_line is not None:
            return on_line
        named = match.top.faq_id if match and match.top and match.control is None else None
        if named in pending.choices:
            return self._deliver(chosen(self.understanding.faq, named))
        return self._act(decision)  # a new question

    @staticmethod
    def _answer_to_question(text: str, away: Away, hold: bool) -> ControlIntent | None:
        """Yes or no to the question put to the caller, if that is what ``text`` says: not
        when it asks for a moment (``hold``: 「いや、ちょっと待って」) or, after the bot
        offered one, for more (「いえ、まだです」); a 「お待たせしました」 before it is set
        aside."""
        if hold or (away.offered and still_waiting(text)):
            return None
        return yes_no(after_return(text))

    def _questions(self) -> int:
        """The caller's turns that count towards the turn limit: not the noises heard while
        they were away (「はい、このままお待ちしております」 was all those got)."""
        return sum(1 for t in self._turns if t.heard or t.action != "hold")

    def _take_away(self) -> Away:
        """Where the caller stood about a wait, which their speaking (or a key) ends."""
        away = Away(self.holding, self._offered_wait)
        self.holding = self._offered_wait = False
        return away

    def _understand(
        self,
        text: str,
        alternatives: Sequence[str],
        heard_probability: float | None,
        unprompted: Mapping[str, float] | None,
        away: Away,
    ) -> tuple[Match | None, Decision]:
        """Understand the caller's words and record the turn. Asking for more time
        (「まだです」, 「もう少し」) just after the bot offered to wait is a hold, whatever
        the FAQ makes of it (elsewhere 「もう少し待って」 asks to defer a payment)."""
        if away.offered and still_waiting(text):
            decision = Decision(BotAction.HOLD, None, 1.0, ControlIntent.HOLD.value)
            self._record(text, decision)
            return None, decision
        match, decision = self.understanding.understand(
            text, alternatives, heard_probability, unprompted
        )
        self._record(match.text, decision)
        return match, decision

    def _on_line(
        self, decision: Decision, state: State, pending: Decision | None, held: bool
    ) -> Reply | None:
        """The reply to something said about the line rather than to the bot, with the
        state the turn found (``state``, ``pending``) kept: a hold, a 「もしもし」, and,
        while the caller is away (``held``), words that say nothing to the bot (talk with
        someone in the room) — they get the hold again, not 「うまくお聞き取りできません
        でした」 and a step towards staff. None for anything else."""
        if decision.action is BotAction.HOLD:
            return self._hold(state, pending, decision)
        if decision.action is BotAction.RESUME:
            self.state, self._pending = state, pending
            parts, asking = self._open_question()
            return self._say((prompts.RESUME, *parts), "resume", expect_yes_no=asking)
        if held and decision.action is BotAction.REPROMPT and decision.intent is None:
            return self._hold(state, pending, decision)
        return None

    def _hold(self, state: State, pending: Decision | None, decision: Decision) -> Reply:
        """The caller asked for a moment (to fetch a notice, to take a note): say the bot
        waits, listen longer than usual, and keep a question put to them open, so that
        「はい」 after the pause still answers it."""
        self.state, self._pending = state, pending
        self.holding = self._offered_wait = True
        asking = pending is not None and state is not State.LISTENING
        return self._say(
            prompts.HOLD, "hold", decision=decision, expect_yes_no=asking, patient=True
        )

    def _hold_over(self) -> Reply:
        """The caller who asked for a moment has been silent for the longer wait: ask
        whether they are ready, putting again a question still open. The silence is not
        counted: the bot offered it."""
        parts, asking = self._open_question()
        self._offered_wait = True  # 「まだです」 now asks for more time
        # Not 「ご準備はいかがでしょうか」 before a yes-or-no question: 「はい」 would answer both.
        first = prompts.HOLD_OVER_AGAIN if asking else prompts.HOLD_OVER
        return self._say((first, *parts), "hold_over", expect_yes_no=asking)

    def _open_question(self) -> tuple[tuple[str, ...], bool]:
        """The question put to the caller and still open (a confirmation, a choice, an
        offer of staff), or else an invitation to ask; and whether it wants a yes or no."""
        pending = self._pending
        if pending is not None and self.state is State.CONFIRMING:
            return confirm_parts(self.understanding.faq[pending.faq_id].title), True
        if pending is not None and self.state is State.CHOOSING:
            faq = self.understanding.faq
            first, second = (faq[faq_id].title for faq_id in pending.choices)
            return choice_parts(first, second), True
        if pending is not None and self.state is State.OFFERED_TRANSFER:
            return (prompts.OFFER_TRANSFER,), True
        return (prompts.GO_AHEAD,), False

    def _offer_choice(self, decision: Decision) -> Reply:
        faq = self.understanding.faq
        first, second = (faq[faq_id].title for faq_id in decision.choices)
        self.state = State.CHOOSING
        self._pending = decision
        parts = choice_parts(first, second)
        return self._say(parts, "choose", decision=decision, expect_yes_no=True)

    def _deliver_choice(self, heard: str, faq_id: str) -> Reply:
        """The caller named one of the offered entries by position or key: record, answer."""
        self._open(heard, faq_id, 1.0)
        return self._deliver(chosen(self.understanding.faq, faq_id))

    def _act(self, decision: Decision) -> Reply:
        match decision.action:
            case BotAction.TRANSFER if decision.faq_id is None:  # a person, not a topic
                return self._transfer("caller_request", prompts.TRANSFER, decision)
            case BotAction.ANSWER | BotAction.REDIRECT | BotAction.TRANSFER:
                return self._deliver(decision)
            case BotAction.CHOOSE:
                return self._offer_choice(decision)
            case BotAction.CONFIRM:
                self.state = State.CONFIRMING
                self._pending = decision
                title = self.understanding.faq[decision.faq_id].title
                parts = confirm_parts(title)
                return self._say(parts, "confirm", decision=decision, expect_yes_no=True)
            case BotAction.REPEAT:
                if self.last_said is None or self.last_said == (prompts.GREETING,):
                    return self._say(prompts.GREETING, "repeat", decision=decision)
                return self._say(
                    (prompts.REPEAT_PREFIX, *self.last_said), "repeat", decision=decision
                )
            case BotAction.GOODBYE:
                return self._say(prompts.GOODBYE, "goodbye", next=Next.HANGUP, decision=decision)
            case BotAction.HOLD:
                return self._hold(self.state, self._pending, decision)
            case BotAction.NOT_A_TAX:
                # Not for staff, who handle taxes; misses stand, in case it was one.
                text = prompts.NOT_A_TAX.format(office_phone=self.city.office_phone)
                parts = (text, prompts.NOT_A_TAX_UNLESS)
                return self._say(parts, "not_a_tax", decision=decision)
            case _:
                return self._not_understood(decision)

    def _deliver(self, decision: Decision) -> Reply:
        """Speak the entry's words as the entry calls for: answer, redirect (and offer
        staff) or transfer. ``decision`` is the one the reply reports (a confirmed
        topic's confirmation, say); the entry decides the words."""
        self.misses = 0
        faq = self.understanding.faq
        entry = faq[decision.faq_id] if decision.faq_id else None
        if entry is None:
            return self._not_understood(decision)
        answer = faq.answer_text(entry)
        action = entry_action(entry)
        if action is BotAction.TRANSFER:
            return self._transfer("staff_topic", answer, decision)
        if action is BotAction.REDIRECT:
            if self._can_hand_over():
                self.state = State.OFFERED_TRANSFER
                self._pending = decision
                return self._say(
                    (answer, prompts.OFFER_TRANSFER),
                    "redirect",
                    decision=decision,
                    expect_yes_no=True,
                )
            return self._say((answer, prompts.ANYTHING_ELSE), "redirect", decision=decision)
        return self._say((answer, prompts.ANYTHING_ELSE), "answer", decision=decision)

    def _not_understood(self, decision: Decision | None = None) -> Reply:
        self.misses += 1
        if self.misses >= 2:
            return self._transfer("not_understood", prompts.TRANSFER_AFTER_FAILURE, decision)
        return self._say(prompts.REPROMPT, "reprompt", decision=decision)


def ordinal_reply(text: str) -> int | None:
    """0 for 「前の方」 and the like, 1 for 「後の方」, else None (also when both appear)."""
    compact = nfkc(text).replace(" ", "")
    if not compact or len(compact) > ORDINAL_REPLY_MAX_CHARS:
        return None
    first = any(w in compact for w in FIRST_WORDS)
    second = any(w in compact for w in SECOND_WORDS)
    if first == second:
        return None
    return 0 if first else 1
