"""Prometheus metrics fed by call events: calls in progress, calls by outcome, turn latency.

``MetricsSink`` is an ``EventSink``: the service adds it to the event pipeline and
``/metrics`` renders its registry. Each sink has its own registry so that several apps
(tests) in one process do not share counters. Updating a counter is a few microseconds
and thread-safe, so ``emit`` can run on the call loop.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
        self.turn_latency = Histogram(
            "voicebot_turn_latency_seconds",
            "From the caller's last speech to the bot's reply starting",
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
            self.turn_latency.observe(max(0.0, event.latency_ms) / 1000.0)
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
