"""Prometheus metrics fed by call events: calls in progress, calls by outcome, turn latency.

Every known outcome is exported from the start (at 0), so that a rate of, say, callers
hanging up while waiting (``hung_up_waiting``) can be graphed and alerted on before the
first such call. A filler (「少々お待ちください」) is not the reply: its wait is a metric
of its own, and the reply's latency is observed when the real reply starts.

``MetricsSink`` is an ``EventSink``: the service adds it to the event pipeline and
``/metrics`` renders its registry. Each sink has its own registry so that several apps
(tests) in one process do not share counters. Updating a counter is a few microseconds
and thread-safe, so ``emit`` can run on the call loop.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from dashboards.recorder import FILLER_KIND
from voicebot.events import (
    BotSpeechStarted,
    CallEnded,
    CallEvent,
    CallStarted,
    ComponentFailed,
    TransferAnswered,
    TransferFailed,
    TransferRequested,
)

# Reply latency buckets (seconds) around the 0.5-2 s a caller notices.
LATENCY_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# CallEnded outcomes, and those set when a call that never ended is closed (error, abandoned).
KNOWN_OUTCOMES = ("completed", "transferred", "hung_up", "hung_up_waiting", "error", "abandoned")


class MetricsSink:
    """Counts call events into Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.calls_in_progress = Gauge(
            "voicebot_calls_in_progress", "Calls currently connected", registry=self.registry
        )
        self.calls_total = Counter(
            "voicebot_calls", "Finished calls by outcome", ["outcome"], registry=self.registry
        )
        for outcome in KNOWN_OUTCOMES:
            self.calls_total.labels(outcome=outcome)
        self.turn_latency = Histogram(
            "voicebot_turn_latency_seconds",
            "From the caller's last speech to the bot's reply starting (fillers excluded)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.filler_wait = Histogram(
            "voicebot_filler_wait_seconds",
            "From the caller's last speech to a filler starting because the reply was late",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.transfers_total = Counter(
            "voicebot_transfers", "Transfers to staff by result", ["result"], registry=self.registry
        )
        self.errors_total = Counter(
            "voicebot_component_errors",
            "Component failures during calls",
            ["component"],
            registry=self.registry,
        )
        self._active: set[str] = set()
        self._lock = threading.Lock()

    def emit(self, event: CallEvent) -> None:
        if isinstance(event, CallStarted):
            with self._lock:
                self._active.add(event.call_id)
                self.calls_in_progress.set(len(self._active))
        elif isinstance(event, CallEnded):
            with self._lock:
                self._active.discard(event.call_id)
                self.calls_in_progress.set(len(self._active))
            self.calls_total.labels(outcome=event.outcome or "unknown").inc()
        elif isinstance(event, BotSpeechStarted) and event.latency_ms is not None:
            waited = max(0.0, event.latency_ms) / 1000.0
            if event.kind == FILLER_KIND:
                self.filler_wait.observe(waited)
            else:
                self.turn_latency.observe(waited)
        elif isinstance(event, TransferRequested):
            self.transfers_total.labels(result="requested").inc()
        elif isinstance(event, TransferAnswered):
            self.transfers_total.labels(result="answered").inc()
        elif isinstance(event, TransferFailed):
            self.transfers_total.labels(result="failed").inc()
        elif isinstance(event, ComponentFailed):
            self.errors_total.labels(component=event.component or "unknown").inc()

    @property
    def active_calls(self) -> int:
        with self._lock:
            return len(self._active)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
