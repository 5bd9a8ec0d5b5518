"""One caller turn, told the same way everywhere: handover, call log and events.

The dialogue opens a turn for each thing the caller does (says something, presses a key,
stays silent, or a component fails on their behalf) and says what the bot did with it;
the call adds the timing as the reply plays. Staff see ``summary()`` in the handover,
``voicebot call --json`` and the benchmarks print ``as_dict()``, and the intent event is
built from the same object, so the three never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUMMARY_FIELDS = ("heard", "faq_id", "score", "action", "candidates")


@dataclass(eq=False)
class Turn:
    """What the caller did, what the bot made of it and said, and when."""

    heard: str  # the recognised text acted on, 「[DTMF 0]」 for a key, "" for silence
    faq_id: str | None = None
    score: float = 0.0
    action: str = ""  # what the bot did: answer, confirm, choose, transfer, reprompt, ...
    candidates: list[dict[str, Any]] = field(default_factory=list)  # the top three considered
    choices: tuple[str, ...] = ()  # the entries offered when the bot asked which one
    said: str = ""  # the words of the reply
    # Timing, filled in by the call (None outside a call, e.g. in ``voicebot ask``).
    speech_end_ms: float | None = None
    reply_start_ms: float | None = None
    latency_ms: float | None = None
    asr_ms: float | None = None
    speculative: bool = False
    first_audio_ms: float | None = None  # wait until the first bot audio (filler or reply)
    fillers: int = 0  # fillers played while the caller waited for this reply

    def summary(self) -> dict[str, Any]:
        """The turn as the handover shows it to staff."""
        return {name: getattr(self, name) for name in SUMMARY_FIELDS}

    def as_dict(self) -> dict[str, Any]:
        """The turn as ``voicebot call --json`` reports it (times rounded to 0.1 ms)."""
        return {
            k: (round(v, 1) if isinstance(v, float) else v)
            for k, v in self.__dict__.items()
            if k != "candidates"
        }

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
