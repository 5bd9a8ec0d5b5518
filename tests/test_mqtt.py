"""MQTT publishing against a real Mosquitto: order, schema, broker outages, restarts of the
publisher, and the subscriber that brings other processes' calls into the bus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from mosquitto import Mosquitto, free_port

from dashboards.config import MqttSettings, OperationsSettings
from dashboards.event_bus import EventBus
from dashboards.mqtt_publisher import MqttPublisher, MqttSubscriber, event_topic
from dashboards.outbox import Outbox
from dashboards.pipeline import EventPipeline
from voicebot.events import (
    BotSpeechStarted,
    CallEnded,
    CallerSpeechEnded,
    CallerSpeechStarted,
    CallStarted,
    IntentDecided,
    Recognized,
)

EVENT_NAMES = {
    "call_started",
    "caller_speech_started",
    "caller_speech_ended",
    "recognized",
    "intent_decided",
    "bot_speech_started",
    "bot_speech_stopped",
    "transfer_requested",
    "transfer_answered",
    "transfer_failed",
    "call_ended",
    "error",
}


class Checker:
    """A separate MQTT client that records every call event the broker delivers.

    With ``persistent`` it keeps its session (and the QoS 1 messages queued for it) over
    a broker restart, so an outage of the broker cannot hide a loss from the test.
    """

    def __init__(self, broker: Mosquitto, settings: MqttSettings, persistent: bool = False):
        self.broker = broker
        self.topic = f"{settings.prefix}/{settings.site}/calls/#"
        self.persistent = persistent
        self.identifier = f"checker-{uuid.uuid4().hex[:8]}"
        self.messages: list[tuple[str, dict[str, Any], float]] = []
        self.subscribed = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Checker:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(20):
            await self.subscribed.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    identifier=self.identifier,
                    clean_session=not self.persistent,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for m in client.messages:
                        payload = json.loads(m.payload)
                        self.messages.append((str(m.topic), payload, time.time()))
                        self._changed.set()
            except aiomqtt.MqttError:
                self.subscribed.clear()
                await asyncio.sleep(0.1)

    async def wait_until(self, done: Callable[[], bool], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    def payloads(self, call_id: str | None = None) -> list[dict[str, Any]]:
        return [p for _, p, _ in self.messages if call_id is None or p["call_id"] == call_id]

    def has_call_ended(self, call_id: str) -> bool:
        return any(p["event"] == "call_ended" for p in self.payloads(call_id))


def synthetic_call(call_id: str, questions: int = 3) -> list:
    """The events of a call as CallSession emits them (for driving the publisher alone)."""
    events: list = [CallStarted(call_id=call_id, t_ms=0.0, transport="test")]
    t = 0.0
    for i in range(questions):
        t += 3000
        events += [
            CallerSpeechStarted(call_id=call_id, t_ms=t),
            CallerSpeechEnded(
                call_id=call_id, t_ms=t + 2000, speech_start_ms=t, last_speech_ms=t + 1900
            ),
            Recognized(call_id=call_id, t_ms=t + 2300, text=f"質問{i}です", final=True),
            IntentDecided(
                call_id=call_id,
                t_ms=t + 2301,
                text=f"質問{i}です",
                faq_id="payment.lost-notice",
                score=0.93,
                action="answer",
            ),
            BotSpeechStarted(call_id=call_id, t_ms=t + 2500, text="お答えします。", kind="answer"),
        ]
    events.append(CallEnded(call_id=call_id, t_ms=t + 9000, outcome="completed", duration_ms=t))
    return events


def assert_valid_stream(
    checker: Checker, settings: MqttSettings, call_id: str, expected: list | None = None
) -> list[dict[str, Any]]:
    """Every payload of the call valid, none lost or out of order (repeats are allowed by
    at-least-once delivery, and dropped here the way EventBus drops them)."""
    seen: set[int] = set()
    stream: list[dict[str, Any]] = []
    for topic, payload, _ in checker.messages:
        if payload.get("call_id") != call_id:
            continue
        assert payload["schema"] == 1
        assert payload["event"] in EVENT_NAMES
        assert isinstance(payload["t_ms"], (int, float))
        assert isinstance(payload["wall_time"], float)
        assert topic == event_topic(settings, payload)
        assert topic == f"{settings.prefix}/{settings.site}/calls/{call_id}/{payload['event']}"
        if payload["seq"] in seen:
            continue
        seen.add(payload["seq"])
        stream.append(payload)
    assert [p["seq"] for p in stream] == list(range(1, len(stream) + 1)), "lost or reordered"
    assert stream[0]["event"] == "call_started"
    assert stream[-1]["event"] == "call_ended"
    if expected is not None:
        assert [p["event"] for p in stream] == [e.name for e in expected]
        assert [p["t_ms"] for p in stream] == [e.t_ms for e in expected]
    return stream


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "mosquitto") as b:
        yield b


def mqtt_settings(broker: Mosquitto) -> MqttSettings:
    return MqttSettings(host=broker.host, port=broker.port, prefix="vb", site="test-site")


@pytest.mark.asyncio
async def test_events_are_published_in_order_with_schema_and_topics(broker, tmp_path):
    settings = mqtt_settings(broker)
    publisher = MqttPublisher(settings, tmp_path / "outbox.sqlite3")
    a, b = synthetic_call("call-a"), synthetic_call("call-b", questions=2)
    async with Checker(broker, settings) as checker:
        await publisher.start()
        for i in range(max(len(a), len(b))):  # two calls at once, interleaved
            for events in (a, b):
                if i < len(events):
                    publisher.emit(events[i])
            await asyncio.sleep(0)
        await checker.wait_until(
            lambda: checker.has_call_ended("call-a") and checker.has_call_ended("call-b")
        )
        await publisher.stop()
    assert_valid_stream(checker, settings, "call-a", a)
    assert_valid_stream(checker, settings, "call-b", b)
    assert publisher.sent == len(a) + len(b)
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        assert len(outbox) == 0  # every message acknowledged and deleted
    first = checker.payloads("call-a")[3]
    assert first["event"] == "recognized" and first["text"] == "質問0です"


@pytest.mark.asyncio
async def test_broker_down_mid_call_loses_nothing_and_keeps_order(tmp_path):
    broker = Mosquitto(tmp_path / "mosquitto", persistent=True)
    broker.start()
    try:
        settings = mqtt_settings(broker)
        publisher = MqttPublisher(settings, tmp_path / "outbox.sqlite3", reconnect_max_s=1.0)
        events = synthetic_call("outage", questions=6)
        half = len(events) // 2
        async with Checker(broker, settings, persistent=True) as checker:
            await publisher.start()
            for e in events[:half]:
                publisher.emit(e)
            await checker.wait_until(lambda: len(checker.payloads("outage")) >= half)

            broker.stop()  # the broker goes away in the middle of the call
            for e in events[half:]:
                publisher.emit(e)  # the call goes on; emit never waits
                await asyncio.sleep(0.01)
            async with asyncio.timeout(30):
                while publisher.connected or len(publisher.outbox) < len(events) - half:
                    await asyncio.sleep(0.05)
            assert len(checker.payloads("outage")) == half  # nothing got through meanwhile

            broker.start()  # same port; the publisher reconnects and drains the outbox
            await checker.wait_until(lambda: checker.has_call_ended("outage"))
            await publisher.stop()
        assert_valid_stream(checker, settings, "outage", events)
        assert len(publisher.outbox) == 0
    finally:
        broker.stop()


@pytest.mark.asyncio
async def test_outbox_left_by_a_stopped_publisher_is_sent_by_the_next(tmp_path):
    port = free_port()  # nothing listens here yet: the broker is down
    settings = MqttSettings(host="127.0.0.1", port=port, prefix="vb", site="restart")
    outbox_path = tmp_path / "outbox.sqlite3"
    events = synthetic_call("left-over", questions=2)

    first = MqttPublisher(settings, outbox_path)
    await first.start()
    for e in events:
        first.emit(e)
    await first.stop(flush_timeout_s=0.5)  # the process ends; the broker never came
    with Outbox(outbox_path) as outbox:
        assert len(outbox) == len(events)

    broker = Mosquitto(tmp_path / "mosquitto", port=port)
    broker.start()
    try:
        async with Checker(broker, settings) as checker:
            second = MqttPublisher(settings, outbox_path)  # the next process
            await second.start()
            await checker.wait_until(lambda: checker.has_call_ended("left-over"))
            await second.stop()
        assert_valid_stream(checker, settings, "left-over", events)
        assert second.sent == len(events)
    finally:
        broker.stop()


@pytest.mark.asyncio
async def test_pipeline_with_bus_and_mqtt_shows_each_event_once(broker, tmp_path):
    """In-process and back over MQTT: the bus shows every event of the call exactly once."""
    ops = OperationsSettings(data_dir=tmp_path / "data", mqtt=mqtt_settings(broker))
    bus = EventBus()
    pipeline = EventPipeline(ops, bus=bus, db=None)
    assert pipeline.publisher is not None and pipeline.subscriber is not None
    await pipeline.start()
    await pipeline.subscriber.wait_subscribed(20)
    viewer = bus.subscribe()
    events = synthetic_call("twice", questions=2)
    for e in events:
        pipeline.emit(e)
    async with asyncio.timeout(30):  # all copies came back over MQTT as well
        while pipeline.subscriber.received < len(events):
            await asyncio.sleep(0.05)
    await pipeline.stop()
    assert bus.duplicates == len(events)
    shown = []
    while viewer.pending:
        shown.append(await viewer.__anext__())
    assert [d["seq"] for d in shown] == list(range(1, len(events) + 1))
    assert (tmp_path / "data" / "mqtt-outbox.sqlite3").exists()


@pytest.mark.asyncio
async def test_subscriber_brings_another_process_calls_into_the_bus_and_skips_junk(broker):
    settings = mqtt_settings(broker)
    bus = EventBus()
    subscriber = MqttSubscriber(settings, bus)
    await subscriber.start()
    await subscriber.wait_subscribed(20)
    viewer = bus.subscribe()
    async with aiomqtt.Client(broker.host, broker.port) as other_process:
        base = "vb/test-site/calls/remote"
        await other_process.publish(f"{base}/call_started", b"\xff not json", qos=1)
        await other_process.publish(f"{base}/call_started", b'["a list"]', qos=1)
        event = CallStarted(call_id="remote", t_ms=0.0, transport="sip").to_dict() | {"seq": 1}
        await other_process.publish(f"{base}/call_started", json.dumps(event), qos=1)
        async with asyncio.timeout(20):
            got = await viewer.__anext__()
    await subscriber.stop()
    assert got["call_id"] == "remote" and got["seq"] == 1
    assert subscriber.rejected == 2
    assert [c["call_id"] for c in bus.active_calls()] == ["remote"]


def test_publisher_needs_a_host(tmp_path: Path):
    with pytest.raises(ValueError, match="host"):
        MqttPublisher(MqttSettings(), tmp_path / "o.sqlite3")


@pytest.mark.asyncio
async def test_an_unusable_outbox_disables_mqtt_but_not_the_live_view(broker, tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    (data / "mqtt-outbox.sqlite3").write_bytes(b"not a database" * 100)
    ops = OperationsSettings(data_dir=data, mqtt=mqtt_settings(broker))
    bus = EventBus()
    pipeline = EventPipeline(ops, bus=bus, db=None, subscribe=False)
    await pipeline.start()
    assert pipeline.publisher is None
    assert any("NOT published" in r.getMessage() for r in caplog.records)
    viewer = bus.subscribe()
    pipeline.emit(CallStarted(call_id="still-shown", t_ms=0.0, transport="test"))
    assert (await viewer.__anext__())["call_id"] == "still-shown"
    await pipeline.stop()


def _received(bus: EventBus, payload: Any) -> bool:
    settings = MqttSettings(host="127.0.0.1", prefix="vb", site="test-site")
    return MqttSubscriber(settings, bus).handle("vb/test-site/calls/remote/x", payload)


def test_subscriber_does_not_trust_the_broker():
    """Another publisher on the broker: oversized, malformed, unmasked or endless input."""
    from privacy.masking import MAX_TEXT_CHARS

    bus = EventBus()
    started = CallStarted(call_id="remote", t_ms=0.0, transport="sip").to_dict()
    big = started | {"caller": "x" * (70 * 1024)}
    assert not _received(bus, json.dumps(big).encode())  # over 64 KiB: not even parsed
    for bad in (
        started | {"call_id": ["remote"]},
        started | {"call_id": "c" * 1000},
        started | {"t_ms": "soon"},
        started | {"seq": -1},
    ):
        assert not _received(bus, json.dumps(bad)), bad
    assert not _received(bus, "[" * 60_000 + "]" * 60_000)  # nesting deeper than Python's
    assert bus.active_calls() == []

    caller = started | {"caller": "sip:09012345678@pbx.example"}
    assert _received(bus, json.dumps(caller))
    heard = {
        "event": "recognized",
        "call_id": "remote",
        "t_ms": 5.0,
        "final": True,
        "text": "電話番号は09012345678です" + "あ" * 5000,
    }
    viewer_events: list[dict[str, Any]] = []
    original = bus.publish_dict

    def seen(data: dict[str, Any]) -> bool:
        viewer_events.append(data)
        return original(data)

    bus.publish_dict = seen  # type: ignore[method-assign]
    assert _received(bus, json.dumps(heard))
    text = viewer_events[-1]["text"]
    assert "09012345678" not in text and "5678" not in text
    assert len(text) <= MAX_TEXT_CHARS + 20
    call = bus.active_calls()[0]
    assert "09012345678" not in (call["caller"] or "")

    for i in range(1500):  # calls whose end never comes
        assert _received(bus, json.dumps(started | {"call_id": f"ghost-{i}"}))
    assert len(bus.active_calls()) == 1000
