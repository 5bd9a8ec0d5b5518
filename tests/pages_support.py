"""Seeded calls for the page tests (the app and browser come from ``tests/browser.py``).

Calls are written through the real ``CallRecorder`` from typed call events, so the rows
are exactly what a real call writes; only the times are chosen, so that the figures of
the reports page are known in advance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from dashboards.db import Database
from voicebot.events import (
    BotSpeechStarted,
    CallEnded,
    CallerSpeechEnded,
    CallEvent,
    CallStarted,
    IntentDecided,
    Recognized,
    TransferAnswered,
    TransferRequested,
)


@dataclass(frozen=True)
class SeedTurn:
    """One caller turn of a seeded call."""

    text: str
    faq_id: str | None
    score: float
    action: str
    latency_ms: float | None = 600.0
    reply: str = "お答えします。"


def call_events(
    call_id: str,
    start: dt.datetime,
    turns: Sequence[SeedTurn],
    outcome: str,
    duration_s: float,
    transfer_reason: str | None = None,
    transfer_answered: bool = False,
) -> list[CallEvent]:
    """The events a call with these turns emits, on a clock starting at ``start``."""
    t0 = start.timestamp()
    events: list[CallEvent] = [
        CallStarted(call_id=call_id, t_ms=0, wall_time=t0, transport="sip", caller="0312345678")
    ]
    t = 8000.0  # after the greeting
    for turn in turns:

        def at(ms: float) -> dict[str, float]:
            return {"t_ms": ms, "wall_time": t0 + ms / 1000}

        events += [
            CallerSpeechEnded(
                call_id=call_id, speech_start_ms=t, last_speech_ms=t + 2000, **at(t + 2350)
            ),
            Recognized(
                call_id=call_id, text=turn.text, final=True, processing_ms=300, **at(t + 2600)
            ),
            IntentDecided(
                call_id=call_id,
                text=turn.text,
                faq_id=turn.faq_id,
                score=turn.score,
                action=turn.action,
                candidates=[{"faq_id": turn.faq_id, "score": turn.score}] if turn.faq_id else [],
                **at(t + 2610),
            ),
            BotSpeechStarted(
                call_id=call_id,
                text=turn.reply,
                kind=turn.action,
                latency_ms=turn.latency_ms,
                **at(t + 2000 + (turn.latency_ms or 600)),
            ),
        ]
        t += 15000
    if transfer_reason:
        events.append(
            TransferRequested(
                call_id=call_id,
                reason=transfer_reason,
                target="console",
                t_ms=t,
                wall_time=t0 + t / 1000,
            )
        )
        if transfer_answered:
            events.append(
                TransferAnswered(
                    call_id=call_id, target="console", t_ms=t + 5000, wall_time=t0 + t / 1000 + 5
                )
            )
    end_ms = duration_s * 1000
    events.append(
        CallEnded(
            call_id=call_id,
            outcome=outcome,
            duration_ms=end_ms,
            t_ms=end_ms,
            wall_time=t0 + duration_s,
        )
    )
    return events


def record(db: Database, *calls: list[CallEvent]) -> None:
    """Write calls through the real recorder and wait until they are committed."""
    from dashboards.recorder import CallRecorder

    recorder = CallRecorder(db)
    try:
        for events in calls:
            for event in events:
                recorder.emit(event)
        assert recorder.flush(30), "the recorder did not commit the seeded calls"
    finally:
        recorder.close()
