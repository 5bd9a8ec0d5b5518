"""The in-process live stream of call events, for the monitor page and the staff console.

Calls emit events from the event loop and must never wait for a viewer, so each
subscriber has a bounded queue: a viewer that falls behind loses its oldest events and
gets a ``gap`` marker in their place (then reloads ``active_calls``), while the call goes
on untouched. A viewer that opens the monitor mid-call gets the calls in progress, with
what has been said so far, from ``active_calls``.

The bus can be fed twice with the same event: in-process from the calls of this process
and over MQTT (``MqttSubscriber``) from the calls of every process, this one included.
Each event therefore carries a per-call ``seq`` and an identity (call, name, call-clock
time, wall time), and an event already seen is not shown again. What was seen of a call
(about 10 KB for a call of 60 events) is kept while it runs and for
``remember_ended_s`` after it ended: long enough for the repeats MQTT brings back after
a broker outage (a repeat later than that is shown again), and memory in proportion to
the calls of that time rather than to the last ``remember_calls`` calls (10,000 calls:
~100 MB).

Events given to the bus must be masked already (``privacy.masking``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from voicebot.events import SCHEMA_VERSION, CallEvent

log = logging.getLogger(__name__)

GAP = "gap"  # event name of the marker a lagging subscriber gets for what it lost

# Events that make up the running transcript of a call, for viewers joining mid-call.
TRANSCRIPT_EVENTS = frozenset(
    {
        "recognized",
        "intent_decided",
        "bot_speech_started",
        "bot_speech_stopped",
        "transfer_requested",
        "transfer_answered",
        "transfer_failed",
        "error",
    }
)


class CallSequence:
    """Per-call sequence numbers 1, 2, 3, … in emit order.

    Every sink numbers the same ordered stream of a call, so the bus of this process and
    the MQTT payloads agree on each event's ``seq``. Calls not heard of for a while are
    forgotten (bounded memory); numbering of a forgotten call would start again at 1.
    """

    def __init__(self, remember_calls: int = 10_000):
        self._next: OrderedDict[str, int] = OrderedDict()
        self._remember = remember_calls
        self._lock = threading.Lock()

    def next(self, call_id: str) -> int:
        with self._lock:
            seq = self._next.pop(call_id, 1)
            self._next[call_id] = seq + 1
            while len(self._next) > self._remember:
                self._next.popitem(last=False)
            return seq

    def observe(self, call_id: str, seq: int) -> None:
        """A numbered event arrived from elsewhere: number later ones after it."""
        with self._lock:
            current = self._next.pop(call_id, 1)
            self._next[call_id] = max(current, seq + 1)
            while len(self._next) > self._remember:
                self._next.popitem(last=False)


def numbered(event: CallEvent, sequence: CallSequence) -> dict[str, Any]:
    """The event as a JSON-able dict with its per-call ``seq``."""
    data = event.to_dict()
    data["seq"] = sequence.next(event.call_id)
    return data


def _identity(data: dict[str, Any]) -> tuple[Any, ...] | None:
    """What makes an event the same event whichever way it came (None: cannot tell)."""
    if "wall_time" in data and "t_ms" in data:
        return (data.get("event"), data["t_ms"], data["wall_time"])
    if "seq" in data:
        return ("seq", data["seq"])
    return None


@dataclass
class _Subscriber:
    call_id: str | None
    maxsize: int
    loop: asyncio.AbstractEventLoop
    items: deque[dict[str, Any]] = field(default_factory=deque)
    dropped: int = 0
    closed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, data: dict[str, Any]) -> bool:
        return self.call_id is None or data.get("call_id") == self.call_id


@dataclass
class _ActiveCall:
    call_id: str
    started_wall_time: float | None = None
    transport: str | None = None
    caller: str | None = None
    state: str = "in_progress"  # in_progress, transferring, transferred
    last_seq: int = 0
    last_event: str | None = None
    last_seen: float = field(default_factory=time.monotonic)
    transcript: deque[dict[str, Any]] = field(default_factory=deque)

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "started_wall_time": self.started_wall_time,
            "transport": self.transport,
            "caller": self.caller,
            "state": self.state,
            "last_seq": self.last_seq,
            "last_event": self.last_event,
            "transcript": list(self.transcript),
        }


@dataclass
class _Seen:
    identities: set[tuple[Any, ...]] = field(default_factory=set)
    next_seq: int = 1
    ended_at: float | None = None  # monotonic time its call_ended was seen


class Subscription(AsyncIterator[dict[str, Any]]):
    """A live stream of event dicts; iterate with ``async for``, close when done.

    Registered as soon as it is created (not at the first iteration), so nothing
    emitted in between is missed. Dicts are shared between subscribers: do not modify.
    """

    def __init__(self, bus: EventBus, subscriber: _Subscriber):
        self._bus = bus
        self._sub = subscriber

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        sub = self._sub
        while True:
            sub.wake.clear()
            with self._bus._lock:
                if sub.dropped:
                    gap = {
                        "event": GAP,
                        "schema": SCHEMA_VERSION,
                        "call_id": sub.call_id,
                        "dropped": sub.dropped,
                        "wall_time": time.time(),
                    }
                    sub.dropped = 0
                    return gap
                if sub.items:
                    return sub.items.popleft()
                if sub.closed:
                    raise StopAsyncIteration
            await sub.wake.wait()

    @property
    def pending(self) -> int:
        """Events waiting to be read (a gap marker counts as one)."""
        with self._bus._lock:
            return len(self._sub.items) + (1 if self._sub.dropped else 0)

    def close(self) -> None:
        """Stop receiving; a pending ``async for`` ends."""
        self._bus._unsubscribe(self._sub)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # e.g. at interpreter shutdown
            self.close()


class EventBus:
    """In-process publish/subscribe of masked call events (an ``EventSink``).

    ``emit`` and ``publish_dict`` may be called from any thread and never block on
    subscribers. ``subscribe`` and iteration belong to an event loop.
    """

    def __init__(
        self,
        *,
        queue_size: int = 1000,
        transcript_limit: int = 500,
        remember_calls: int = 10_000,
        remember_ended_s: float = 3600.0,
        stale_after_s: float = 4 * 3600.0,
        max_active_calls: int = 1000,
    ):
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.queue_size = queue_size
        self.transcript_limit = transcript_limit
        self.remember_calls = remember_calls
        self.remember_ended_s = remember_ended_s
        self.stale_after_s = stale_after_s
        self.max_active_calls = max_active_calls
        self._lock = threading.Lock()
        self._subscribers: list[_Subscriber] = []
        self._active: dict[str, _ActiveCall] = {}
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self.published = 0
        self.duplicates = 0
        self.dropped = 0  # events lost by lagging subscribers (each got a gap marker)

    # -- in ------------------------------------------------------------------------------
    def emit(self, event: CallEvent) -> None:
        """EventSink: publish a (masked) call event."""
        self.publish_dict(event.to_dict())

    def publish_dict(self, data: dict[str, Any]) -> bool:
        """Publish an already serialised event; False if it was a duplicate (not shown).

        Call events (dicts of a ``CallEvent``: ``call_id`` and ``t_ms``) get a per-call
        ``seq`` when they lack one and update ``active_calls``. Other notices (e.g. the
        staff console's ``staff_ringing``) go out as they are: to subscribers of all calls,
        and to those of their ``call_id`` if they have one.
        """
        data = dict(data)
        call_id = data.get("call_id")
        wakes: list[_Subscriber] = []
        with self._lock:
            if isinstance(call_id, str) and call_id and "t_ms" in data:  # a CallEvent
                if not self._number(call_id, data):
                    self.duplicates += 1
                    return False
                self._track(call_id, data)
            self.published += 1
            for sub in self._subscribers:
                if sub.closed or not sub.wants(data):
                    continue
                if len(sub.items) >= sub.maxsize:
                    sub.items.popleft()
                    sub.dropped += 1
                    self.dropped += 1
                sub.items.append(data)
                wakes.append(sub)
        for sub in wakes:
            _wake(sub)
        return True

    def _number(self, call_id: str, data: dict[str, Any]) -> bool:
        seen = self._seen.pop(call_id, None) or _Seen()
        self._seen[call_id] = seen
        self._forget_old_calls()
        identity = _identity(data)
        if identity is not None:
            if identity in seen.identities:
                return False
            seen.identities.add(identity)
        seq = data.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            seen.next_seq = max(seen.next_seq, seq + 1)
        else:
            data["seq"] = seen.next_seq
            seen.next_seq += 1
        if data.get("event") == "call_ended" and seen.ended_at is None:
            seen.ended_at = time.monotonic()
        return True

    def _forget_old_calls(self) -> None:
        """Drop what was seen of the calls heard of least recently: beyond
        ``remember_calls``, and those that ended over ``remember_ended_s`` ago."""
        seen = self._seen
        while len(seen) > self.remember_calls:
            seen.popitem(last=False)
        expired = time.monotonic() - self.remember_ended_s
        while seen:
            oldest = next(iter(seen.values()))
            if oldest.ended_at is None or oldest.ended_at > expired:
                break
            seen.popitem(last=False)

    @property
    def remembered_calls(self) -> int:
        """Calls whose events are remembered (to drop repeats)."""
        with self._lock:
            return len(self._seen)

    def _track(self, call_id: str, data: dict[str, Any]) -> None:
        name = data.get("event")
        if name == "call_ended":
            self._active.pop(call_id, None)
            return
        call = self._active.get(call_id)
        if call is None:
            if len(self._active) >= self.max_active_calls:
                # Far more calls than lines: ones whose end was lost; the quietest goes.
                quietest = min(self._active.values(), key=lambda c: c.last_seen)
                del self._active[quietest.call_id]
            call = self._active[call_id] = _ActiveCall(call_id)
        call.last_seen = time.monotonic()
        call.last_seq = max(call.last_seq, data["seq"])
        call.last_event = name
        if name == "call_started":
            call.started_wall_time = data.get("wall_time")
            call.transport = data.get("transport")
            call.caller = data.get("caller")
        elif name == "transfer_requested":
            call.state = "transferring"
        elif name == "transfer_answered":
            call.state = "transferred"
        elif name == "transfer_failed":
            call.state = "in_progress"
        if name in TRANSCRIPT_EVENTS:
            call.transcript.append(data)
            while len(call.transcript) > self.transcript_limit:
                call.transcript.popleft()

    # -- out -----------------------------------------------------------------------------
    def subscribe(self, call_id: str | None = None) -> Subscription:
        """A live stream of events (of one call, or all); ``async for d in bus.subscribe()``.

        For a page joining mid-call: subscribe first, then read ``active_calls()``, and
        skip streamed events whose ``seq`` the transcript already has.
        """
        sub = _Subscriber(call_id, self.queue_size, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.append(sub)
        return Subscription(self, sub)

    def _unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            sub.closed = True
            if sub in self._subscribers:
                self._subscribers.remove(sub)
        _wake(sub)

    def active_calls(self) -> list[dict[str, Any]]:
        """Calls in progress, oldest first, each with its transcript so far.

        A call leaves on ``call_ended``, or when nothing was heard of it for
        ``stale_after_s`` (its process died without saying so).
        """
        now = time.monotonic()
        with self._lock:
            for call_id in [
                c.call_id for c in self._active.values() if now - c.last_seen > self.stale_after_s
            ]:
                log.warning("call %s: no events for a long time; no longer shown", call_id)
                del self._active[call_id]
            calls = [c.as_dict() for c in self._active.values()]
        return sorted(calls, key=lambda c: c["started_wall_time"] or 0.0)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)


def _wake(sub: _Subscriber) -> None:
    """Set the subscriber's event from whatever thread we are on."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is sub.loop:
        sub.wake.set()
        return
    with contextlib.suppress(RuntimeError):  # its loop is closed: nobody listens any more
        sub.loop.call_soon_threadsafe(sub.wake.set)
