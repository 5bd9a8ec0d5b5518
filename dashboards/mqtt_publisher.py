"""Call events over MQTT: published through a durable outbox, and received back into a bus.

``MqttPublisher`` is an EventSink for the call path: ``emit`` only numbers the event and
queues it. A background task writes queued events to the outbox (SQLite) and another
sends the outbox to the broker oldest first with QoS 1, deleting each message once the
broker has acknowledged it. While the broker is down, events pile up in the outbox and
go out in order after the reconnect; what a stopped process leaves behind is sent by
the next one. Delivery is at least once: a message whose PUBACK was lost may come twice
(``EventBus`` drops repeats by call, event and time).

``MqttSubscriber`` feeds the events of every process of a site (``voicebot call``,
another ``voicebot serve``) into this process's ``EventBus``.

Topics: ``<prefix>/<site>/calls/<call_id>/<event>``; payload: the event dict as JSON
(with ``schema``, ``event``, ``call_id``, ``seq``, ``t_ms``, ``wall_time``, …).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import aiomqtt

from dashboards.config import MqttSettings
from dashboards.event_bus import CallSequence, EventBus, numbered
from dashboards.outbox import DEFAULT_MAX_MESSAGES, Outbox, OutboxError, OutboxFull
from privacy.masking import MAX_TEXT_CHARS, mask_caller, mask_text, mask_value
from voicebot.events import SCHEMA_VERSION, CallEvent

log = logging.getLogger(__name__)

_STOP = object()
_TOPIC_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_", "\0": "_"})


def calls_topic(settings: MqttSettings) -> str:
    """The wildcard topic of every call event of the site."""
    return f"{settings.prefix}/{settings.site}/calls/#"


def event_topic(settings: MqttSettings, data: dict[str, Any]) -> str:
    """``<prefix>/<site>/calls/<call_id>/<event>``; '/', '+' and '#' in names become '_'."""
    call_id = str(data.get("call_id") or "unknown").translate(_TOPIC_UNSAFE)
    name = str(data.get("event") or "event").translate(_TOPIC_UNSAFE)
    return f"{settings.prefix}/{settings.site}/calls/{call_id}/{name}"


def encode_payload(data: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (Japanese stays readable in the payload)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_json_value).encode(
        "utf-8"
    )


def _json_value(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars (matcher scores)
    if callable(item):
        return item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _client(settings: MqttSettings, role: str, timeout_s: float) -> aiomqtt.Client:
    assert settings.host, "MQTT host not configured"
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=f"voicebot-{role}-{uuid.uuid4().hex[:10]}",
        timeout=timeout_s,
        logger=logging.getLogger(f"{__name__}.client"),
    )
    # A batch from the outbox is in flight at once on purpose; no warning for that.
    client.pending_calls_threshold = 10_000
    return client


class MqttPublisher:
    """EventSink that publishes (masked) call events to MQTT, none lost, in order."""

    def __init__(
        self,
        settings: MqttSettings,
        outbox_path: Path,
        *,
        max_outbox_messages: int = DEFAULT_MAX_MESSAGES,
        batch_size: int = 100,
        timeout_s: float = 5.0,
        reconnect_max_s: float = 10.0,
    ):
        if not settings.host:
            raise ValueError("MqttPublisher needs [mqtt] host")
        self.settings = settings
        self.outbox_path = Path(outbox_path)
        self.max_outbox_messages = max_outbox_messages
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.reconnect_max_s = reconnect_max_s
        self.sequence = CallSequence()
        self.outbox: Outbox | None = None
        self.sent = 0  # messages acknowledged by the broker since start
        self.refused = 0  # events refused by a full outbox (logged loudly by the outbox)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._appended = asyncio.Event()
        self._connected = asyncio.Event()
        self._spooled_all = False
        self._stopping = False
        self._spool_task: asyncio.Task[None] | None = None
        self._send_task: asyncio.Task[None] | None = None

    # -- EventSink -----------------------------------------------------------------------
    def emit(self, event: CallEvent) -> None:
        """Number the event and queue it; returns at once (any thread)."""
        self.emit_dict(numbered(event, self.sequence))

    def emit_dict(self, data: dict[str, Any]) -> None:
        """Queue an already numbered event dict."""
        if self._stopping:
            log.warning(
                "MQTT publisher stopped: %s event of call %s not published",
                data.get("event"),
                data.get("call_id"),
            )
            return
        loop = self._loop
        if loop is not None and not _on_loop(loop):
            loop.call_soon_threadsafe(self._queue.put_nowait, data)
        else:
            self._queue.put_nowait(data)

    # -- life cycle ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        """Until the broker accepted the connection (for tests and start-up logs)."""
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    async def start(self) -> None:
        """Open the outbox and start spooling and sending in the background."""
        self._loop = asyncio.get_running_loop()
        self.outbox = await asyncio.to_thread(
            Outbox, self.outbox_path, max_messages=self.max_outbox_messages
        )
        if len(self.outbox):
            self._appended.set()
        self._spool_task = asyncio.create_task(self._spool(), name="mqtt-spool")
        self._send_task = asyncio.create_task(self._send(), name="mqtt-send")

    async def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Store every queued event, send what the broker takes within the timeout.

        Anything not acknowledged by then stays in the outbox for the next start.
        """
        if self._spool_task is None or self._send_task is None or self.outbox is None:
            return
        self._queue.put_nowait(_STOP)
        self._stopping = True
        await self._spool_task
        self._spooled_all = True
        self._appended.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._send_task), flush_timeout_s)
        except TimeoutError:
            self._send_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._send_task
        left = len(self.outbox)
        if left:
            log.warning(
                "MQTT broker %s:%d did not take %d event message(s) in time; they stay in %s "
                "and are sent on the next start",
                self.settings.host,
                self.settings.port,
                left,
                self.outbox_path,
            )
        await asyncio.to_thread(self.outbox.close)
        self._connected.clear()

    # -- background tasks ----------------------------------------------------------------
    async def _spool(self) -> None:
        """Queue → outbox, in order, in batches."""
        assert self.outbox is not None
        while True:
            items = [await self._queue.get()]
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            stop = any(item is _STOP for item in items)
            batch = [item for item in items if item is not _STOP]
            if batch:
                await self._store(batch)
            if stop:
                return

    async def _store(self, batch: list[dict[str, Any]]) -> None:
        assert self.outbox is not None
        messages = [
            (event_topic(self.settings, d), encode_payload(d), self.settings.qos) for d in batch
        ]
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(self.outbox.append_many, messages)
            except OutboxFull as exc:
                self.refused += exc.rejected  # logged by the outbox
            except OutboxError as exc:
                # The disk may come back (space freed): keep the batch and retry.
                log.error("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            break
        self._appended.set()

    async def _send(self) -> None:
        """Outbox → broker, oldest first; reconnects with backoff."""
        delay = 0.2
        reported = False
        while True:
            try:
                async with _client(self.settings, "pub", self.timeout_s) as client:
                    self._connected.set()
                    log.info("MQTT: connected to %s:%d", self.settings.host, self.settings.port)
                    delay, reported = 0.2, False
                    if await self._send_connected(client):
                        return
            except aiomqtt.MqttError as exc:
                self._connected.clear()
                if self._spooled_all and not await asyncio.to_thread(len, self.outbox):
                    return
                if not reported:
                    reported = True
                    log.warning(
                        "MQTT broker %s:%d unreachable (%s); events wait in the outbox %s",
                        self.settings.host,
                        self.settings.port,
                        exc,
                        self.outbox_path,
                    )
                else:
                    log.debug("MQTT reconnect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_s)

    async def _send_connected(self, client: aiomqtt.Client) -> bool:
        """Send until stopped (True) or the connection fails (raises MqttError)."""
        assert self.outbox is not None
        while True:
            self._appended.clear()
            batch = await asyncio.to_thread(self.outbox.peek, self.batch_size)
            if not batch:
                if self._spooled_all:
                    return True
                await self._appended.wait()
                continue
            results = await asyncio.gather(
                *(
                    client.publish(m.topic, m.payload, qos=m.qos, timeout=self.timeout_s)
                    for m in batch
                ),
                return_exceptions=True,
            )
            # Only the acknowledged prefix is done: a later message may not overtake an
            # earlier one that has to be sent again.
            done = 0
            for result in results:
                if isinstance(result, BaseException):
                    break
                done += 1
            if done:
                await asyncio.to_thread(self.outbox.delete, [m.id for m in batch[:done]])
                self.sent += done
            if done < len(batch):
                failure = results[done]
                if isinstance(failure, aiomqtt.MqttError):
                    raise failure
                if isinstance(failure, BaseException):
                    raise aiomqtt.MqttError(f"publish failed: {failure!r}") from failure


class MqttSubscriber:
    """Receives the call events of the site from the broker into an ``EventBus``."""

    def __init__(
        self,
        settings: MqttSettings,
        bus: EventBus,
        *,
        timeout_s: float = 5.0,
        reconnect_max_s: float = 10.0,
    ):
        if not settings.host:
            raise ValueError("MqttSubscriber needs [mqtt] host")
        self.settings = settings
        self.bus = bus
        self.timeout_s = timeout_s
        self.reconnect_max_s = reconnect_max_s
        self.received = 0
        self.rejected = 0  # payloads that were not call events
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned_schema = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt-subscribe")

    async def wait_subscribed(self, timeout_s: float | None = None) -> None:
        """Until the subscription is active (events published after this arrive)."""
        await asyncio.wait_for(self._subscribed.wait(), timeout_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._subscribed.clear()

    async def _run(self) -> None:
        delay = 0.2
        reported = False
        topic = calls_topic(self.settings)
        while True:
            try:
                async with _client(self.settings, "sub", self.timeout_s) as client:
                    await client.subscribe(topic, qos=1)
                    self._subscribed.set()
                    log.info("MQTT: receiving %s from %s", topic, self.settings.host)
                    delay, reported = 0.2, False
                    async for message in client.messages:
                        self.handle(str(message.topic), message.payload)
            except aiomqtt.MqttError as exc:
                self._subscribed.clear()
                if not reported:
                    reported = True
                    log.warning(
                        "MQTT broker %s:%d unreachable (%s); live view shows this process only",
                        self.settings.host,
                        self.settings.port,
                        exc,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_s)

    def handle(self, topic: str, payload: Any) -> bool:
        """One received message → the bus; a payload that is not a call event is logged
        and skipped (a bad message must not stop the stream)."""
        try:
            if isinstance(payload, str):
                payload = payload.encode("utf-8")
            if not isinstance(payload, (bytes, bytearray)):
                raise ValueError("not a text payload")
            if len(payload) > MAX_RECEIVED_BYTES:
                raise ValueError(f"{len(payload)} bytes (limit {MAX_RECEIVED_BYTES})")
            data = received_event(json.loads(payload.decode("utf-8")))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            self.rejected += 1
            log.warning("MQTT %s: ignored payload: %s", topic, exc)
            return False
        if data.get("schema") != SCHEMA_VERSION and not self._warned_schema:
            self._warned_schema = True
            log.warning(
                "MQTT %s: event schema %r, this process knows %d; showing it anyway",
                topic,
                data.get("schema"),
                SCHEMA_VERSION,
            )
        self.received += 1
        self.bus.publish_dict(data)
        return True


MAX_RECEIVED_BYTES = 64 * 1024  # a call event is a few hundred bytes; a handover a few KiB
MAX_ID_CHARS = 128
_NUMBERS = ("t_ms", "wall_time", "score", "duration_ms", "processing_ms", "latency_ms")


def _bounded(value: Any) -> Any:
    """Every string in ``value`` cut to MAX_TEXT_CHARS."""
    if isinstance(value, str):
        return value[:MAX_TEXT_CHARS]
    if isinstance(value, dict):
        return {str(k)[:MAX_ID_CHARS]: _bounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bounded(v) for v in value]
    return value


def received_event(data: Any) -> dict[str, Any]:
    """A call event from the broker, checked and masked again before the bus shows it.

    The broker is a separate service that anyone with its password can publish to: its
    messages are not trusted to be well formed, bounded or masked. Raises ValueError.
    """
    if not isinstance(data, dict):
        raise ValueError("not a call event (needs call_id and event)")
    call_id, event = data.get("call_id"), data.get("event")
    for name, value in (("call_id", call_id), ("event", event)):
        if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
            raise ValueError(f"not a call event ({name} must be a short text)")
    for name in _NUMBERS:
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{name} must be a number")
    seq = data.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        raise ValueError("seq must be a whole number")
    clean = _bounded(data)
    if isinstance(clean.get("caller"), str):
        clean["caller"] = mask_caller(clean["caller"])
    for name in ("text", "error"):
        if isinstance(clean.get(name), str) and not (
            name == "text" and event == "bot_speech_started"  # the FAQ's words: not the caller's
        ):
            clean[name] = mask_text(clean[name])
    for name in ("summary", "candidates"):
        if name in clean:
            clean[name] = mask_value(clean[name], name)
    return clean


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
