"""What one call said and did: the record ``voicebot call --json`` prints, and the event
for each decided turn. Nothing here steers the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voicebot.dialogue import Handover, Reply
from voicebot.events import IntentDecided
from voicebot.turn import Turn


def intent_decided(
    call_id: str, now_ms: float, text: str, turn: Turn, reply: Reply
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
    outcome: str  # completed, transferred, hung_up, hung_up_waiting, abandoned
    duration_ms: float
    turns: list[Turn]
    handover: Handover | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "outcome": self.outcome,
            "duration_ms": round(self.duration_ms, 1),
            "turns": [t.as_dict() for t in self.turns],
            "handover": self.handover.as_dict() if self.handover else None,
        }
