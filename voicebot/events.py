"""Typed call events: what happened in a call, for observers, records and dashboards.

The call loop emits these and never waits for whoever listens: sinks (the in-process
bus, MQTT, the database) plug in through ``EventSink``. Payloads carry only what was
said and decided, never audio.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

SCHEMA_VERSION = 1
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class CallEvent:
    """Base of all call events. ``t_ms`` is on the call's clock (0 = call start)."""

    name: ClassVar[str] = "event"
    call_id: str
    t_ms: float
    wall_time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["event"] = self.name
        data["schema"] = SCHEMA_VERSION
        return data


@dataclass(frozen=True, kw_only=True)
class CallStarted(CallEvent):
    name: ClassVar[str] = "call_started"
    transport: str
    caller: str | None = None


@dataclass(frozen=True, kw_only=True)
class CallerSpeechStarted(CallEvent):
    name: ClassVar[str] = "caller_speech_started"


@dataclass(frozen=True, kw_only=True)
class CallerSpeechEnded(CallEvent):
    name: ClassVar[str] = "caller_speech_ended"
    speech_start_ms: float
    last_speech_ms: float


@dataclass(frozen=True, kw_only=True)
class Recognized(CallEvent):
    name: ClassVar[str] = "recognized"
    text: str
    final: bool
    processing_ms: float | None = None


@dataclass(frozen=True, kw_only=True)
class IntentDecided(CallEvent):
    name: ClassVar[str] = "intent_decided"
    text: str
    faq_id: str | None
    score: float
    action: str
    candidates: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class BotSpeechStarted(CallEvent):
    name: ClassVar[str] = "bot_speech_started"
    text: str
    kind: str  # answer, confirm, reprompt, greeting, transfer, ..., filler (not a reply)
    latency_ms: float | None = None  # from the caller's last speech, when replying


@dataclass(frozen=True, kw_only=True)
class BotSpeechStopped(CallEvent):
    name: ClassVar[str] = "bot_speech_stopped"
    barged_in: bool = False


@dataclass(frozen=True, kw_only=True)
class TransferRequested(CallEvent):
    name: ClassVar[str] = "transfer_requested"
    reason: str
    target: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TransferAnswered(CallEvent):
    name: ClassVar[str] = "transfer_answered"
    target: str | None = None


@dataclass(frozen=True, kw_only=True)
class TransferFailed(CallEvent):
    name: ClassVar[str] = "transfer_failed"
    target: str | None = None
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class CallEnded(CallEvent):
    name: ClassVar[str] = "call_ended"
    outcome: str  # completed, transferred, hung_up, hung_up_waiting (gave up waiting),
    # abandoned (the line was cut by a failure on our side)
    duration_ms: float


@dataclass(frozen=True, kw_only=True)
class ComponentFailed(CallEvent):
    name: ClassVar[str] = "error"
    component: str
    error: str


class EventSink(Protocol):
    """Receives call events. ``emit`` must return quickly; queue if the sink is slow."""

    def emit(self, event: CallEvent) -> None: ...


class EventFanout:
    """Sends each event to several sinks; a failing sink never disturbs the call."""

    def __init__(self, *sinks: EventSink):
        self.sinks = list(sinks)

    def add(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    def emit(self, event: CallEvent) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:  # an observer must never break the call
                log.exception("event sink %r failed", sink)


E = TypeVar("E", bound=CallEvent)


class EventRecorder:
    """Keeps events in memory (for tests, the CLI's JSON and the in-process bus)."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    def emit(self, event: CallEvent) -> None:
        self.events.append(event)

    def of_type(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]
