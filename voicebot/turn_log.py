"""What one call said and did, turn by turn: the record ``voicebot call --json`` prints.

The call fills these in as the conversation goes; nothing here steers the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voicebot.asr.base import Transcript
from voicebot.dialogue import Handover, Reply
from voicebot.events import IntentDecided


@dataclass
class TurnLog:
    """One exchange, as ``voicebot call --json`` reports it."""

    heard: str
    faq_id: str | None
    score: float
    action: str
    said: str
    speech_end_ms: float | None
    reply_start_ms: float | None = None
    latency_ms: float | None = None
    asr_ms: float | None = None
    speculative: bool = False
    first_audio_ms: float | None = None  # wait until the first bot audio (filler or reply)
    fillers: int = 0  # fillers played while the caller waited for this reply
    choices: tuple[str, ...] = ()  # the entries offered when the bot asked which one

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in self.__dict__.items()}

    @classmethod
    def of_reply(
        cls,
        heard: str,
        reply: Reply,
        transcript: Transcript,
        speech_end_ms: float,
        speculative: bool,
    ) -> TurnLog:
        """The turn a recognised utterance made, before its reply is played."""
        decision = reply.decision
        return cls(
            heard=heard,
            faq_id=decision.faq_id if decision else None,
            score=round(decision.score, 4) if decision else 0.0,
            action=reply.kind,
            said="",
            speech_end_ms=speech_end_ms,
            asr_ms=transcript.processing_ms,
            speculative=speculative,
            choices=decision.choices if decision else (),
        )

    def mark_reply_started(self, now_ms: float) -> float | None:
        """The reply's first audio is playing; returns the caller's wait for it, if any."""
        if self.reply_start_ms is not None:
            return None
        self.reply_start_ms = now_ms
        if self.speech_end_ms is None:
            return None
        self.latency_ms = now_ms - self.speech_end_ms
        if self.first_audio_ms is None:
            self.first_audio_ms = self.latency_ms
        return self.latency_ms


def intent_decided(
    call_id: str, now_ms: float, text: str, turn: TurnLog, reply: Reply
) -> IntentDecided:
    """The event for a decided turn: what was heard, the entry, the action, the top three."""
    decision = reply.decision
    return IntentDecided(
        call_id=call_id,
        t_ms=now_ms,
        text=text,
        faq_id=turn.faq_id,
        score=turn.score,
        action=reply.kind,
        candidates=[
            {"faq_id": c.faq_id, "score": c.score}
            for c in (decision.candidates if decision else [])[:3]
        ],
    )


@dataclass
class CallResult:
    """How a call ended, and its turns."""

    call_id: str
    outcome: str  # completed, transferred, hung_up, hung_up_waiting
    duration_ms: float
    turns: list[TurnLog]
    handover: Handover | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "outcome": self.outcome,
            "duration_ms": round(self.duration_ms, 1),
            "turns": [t.as_dict() for t in self.turns],
            "handover": self.handover.as_dict() if self.handover else None,
        }
