"""The in-process live bus: order, lagging viewers, late joiners, repeats, threads."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from dashboards.event_bus import GAP, CallSequence, EventBus, numbered
from voicebot.events import (
    BotSpeechStarted,
    CallEnded,
    CallStarted,
    IntentDecided,
    Recognized,
    TransferRequested,
)


def call_events(call_id: str, turns: int = 2) -> list:
    events = [CallStarted(call_id=call_id, t_ms=0.0, transport="test", caller="031234****")]
    t = 0.0
    for i in range(turns):
        t += 1000
        events.append(Recognized(call_id=call_id, t_ms=t, text=f"質問{i}", final=True))
        events.append(
            IntentDecided(
                call_id=call_id, t_ms=t + 1, text=f"質問{i}", faq_id="x", score=0.9, action="answer"
            )
        )
        events.append(BotSpeechStarted(call_id=call_id, t_ms=t + 2, text=f"回答{i}", kind="answer"))
    return events


async def take(subscription, n: int, timeout: float = 5.0) -> list[dict]:
    out = []
    async with asyncio.timeout(timeout):
        async for item in subscription:
            out.append(item)
            if len(out) == n:
                break
    return out


@pytest.mark.asyncio
async def test_subscribers_get_events_in_order_with_per_call_seq():
    bus = EventBus()
    everything = bus.subscribe()
    only_b = bus.subscribe("b")
    a, b = call_events("a"), call_events("b")
    for ea, eb in zip(a, b, strict=True):  # two calls interleaved
        bus.emit(ea)
        bus.emit(eb)
    got = await take(everything, len(a) + len(b))
    for call_id, sent in (("a", a), ("b", b)):
        mine = [d for d in got if d["call_id"] == call_id]
        assert [d["event"] for d in mine] == [e.name for e in sent]
        assert [d["seq"] for d in mine] == list(range(1, len(sent) + 1))
        assert all(d["schema"] == 1 for d in mine)
    got_b = await take(only_b, len(b))
    assert {d["call_id"] for d in got_b} == {"b"}
    assert [d["seq"] for d in got_b] == list(range(1, len(b) + 1))
    json.dumps(got)  # what viewers get is JSON-able as it is


@pytest.mark.asyncio
async def test_a_slow_subscriber_never_blocks_emit_and_gets_a_gap_marker():
    bus = EventBus(queue_size=5)
    slow = bus.subscribe()  # never reads while the call runs
    fast = bus.subscribe()
    events = call_events("c", turns=10)  # 31 events
    for e in events:
        bus.emit(e)  # returns at once although `slow` reads nothing
    got = await take(slow, 6)
    assert got[0]["event"] == GAP
    assert got[0]["dropped"] == len(events) - 5
    # The newest five remain, in order, after the marker.
    assert [d["seq"] for d in got[1:]] == list(range(len(events) - 4, len(events) + 1))
    assert bus.dropped == 2 * (len(events) - 5)  # both lagged: nobody read during the burst
    fast_got = await take(fast, 6)
    assert fast_got[0]["event"] == GAP


@pytest.mark.asyncio
async def test_a_reading_subscriber_loses_nothing_while_another_lags():
    bus = EventBus(queue_size=3)
    bus.subscribe()  # a viewer that has stalled
    reader = bus.subscribe()
    events = call_events("c", turns=5)
    received: list[dict] = []

    async def read() -> None:
        received.extend(await take(reader, len(events)))

    task = asyncio.create_task(read())
    for e in events:
        bus.emit(e)
        await asyncio.sleep(0)  # the call loop yields between events
    await task
    assert [d["seq"] for d in received] == list(range(1, len(events) + 1))


@pytest.mark.asyncio
async def test_late_joiner_sees_calls_in_progress_with_their_transcript():
    bus = EventBus()
    for e in call_events("a", turns=2):
        bus.emit(e)
    for e in call_events("b", turns=1):
        bus.emit(e)
    bus.emit(TransferRequested(call_id="b", t_ms=5000, reason="caller_request"))
    calls = {c["call_id"]: c for c in bus.active_calls()}
    assert set(calls) == {"a", "b"}
    a = calls["a"]
    assert a["transport"] == "test" and a["caller"] == "031234****"
    assert a["state"] == "in_progress"
    assert [(d["event"], d.get("text")) for d in a["transcript"]] == [
        ("recognized", "質問0"),
        ("intent_decided", "質問0"),
        ("bot_speech_started", "回答0"),
        ("recognized", "質問1"),
        ("intent_decided", "質問1"),
        ("bot_speech_started", "回答1"),
    ]
    assert a["last_seq"] == 7
    assert calls["b"]["state"] == "transferring"
    bus.emit(CallEnded(call_id="a", t_ms=9000, outcome="completed", duration_ms=9000))
    assert [c["call_id"] for c in bus.active_calls()] == ["b"]
    json.dumps(bus.active_calls())


@pytest.mark.asyncio
async def test_an_event_arriving_twice_is_shown_once():
    """In-process and again over MQTT (with the publisher's seq): one copy only."""
    bus = EventBus()
    sub = bus.subscribe()
    sequence = CallSequence()
    events = call_events("d", turns=1)
    over_mqtt = [json.loads(json.dumps(numbered(e, sequence))) for e in events]
    for e in events:
        bus.emit(e)
    for d in over_mqtt:
        assert bus.publish_dict(d) is False
    assert bus.duplicates == len(events)
    got = await take(sub, len(events))
    assert [d["seq"] for d in got] == [d["seq"] for d in over_mqtt]
    # Nothing else is queued: the repeats were not passed on.
    bus.emit(CallEnded(call_id="d", t_ms=9, outcome="hung_up", duration_ms=9))
    (last,) = await take(sub, 1)
    assert last["event"] == "call_ended" and last["seq"] == len(events) + 1


def ended_call(call_id: str, turns: int = 2) -> list:
    ended = CallEnded(call_id=call_id, t_ms=9000.0, outcome="completed", duration_ms=9000.0)
    return [*call_events(call_id, turns), ended]


def test_repeats_of_an_ended_call_are_dropped_while_it_is_remembered():
    """MQTT brings this process's events back after a broker outage: not shown again."""
    bus = EventBus()
    sequence = CallSequence()
    events = ended_call("e")
    over_mqtt = [json.loads(json.dumps(numbered(e, sequence))) for e in events]
    for e in events:
        bus.emit(e)
    assert not any(bus.publish_dict(d) for d in over_mqtt)
    assert bus.active_calls() == [] and bus.remembered_calls == 1


def test_what_was_seen_of_ended_calls_is_forgotten_after_a_while(monkeypatch):
    """Memory follows the calls of the last ``remember_ended_s``, not the last 10,000."""
    clock = [1000.0]
    monkeypatch.setattr("dashboards.event_bus.time.monotonic", lambda: clock[0])
    bus = EventBus(remember_ended_s=600.0)
    for n in range(500):
        for e in ended_call(f"call-{n}"):
            bus.emit(e)
        clock[0] += 60.0  # a call a minute: ten of them within the 600 s
    assert bus.remembered_calls <= 11
    live = call_events("in-progress")
    for e in live:
        bus.emit(e)
    clock[0] += 7200.0  # a long call goes on: what was seen of it stays
    bus.emit(CallStarted(call_id="next", t_ms=0.0, transport="test"))
    assert not bus.publish_dict(live[0].to_dict() | {"seq": 1})
    assert bus.remembered_calls == 2  # the call in progress and the new one


@pytest.mark.asyncio
async def test_events_only_seen_over_mqtt_keep_their_seq_and_make_an_active_call():
    bus = EventBus()
    sequence = CallSequence()
    for e in call_events("remote", turns=1):
        bus.publish_dict(json.loads(json.dumps(numbered(e, sequence))))
    (call,) = bus.active_calls()
    assert call["call_id"] == "remote" and call["last_seq"] == 4


@pytest.mark.asyncio
async def test_notices_without_a_call_go_to_subscribers_of_all_calls():
    bus = EventBus()
    everything = bus.subscribe()
    one_call = bus.subscribe("a")
    bus.publish_dict({"event": "staff_ringing", "schema": 1, "summary": "住民税"})
    bus.emit(call_events("a")[0])
    got = await take(everything, 2)
    assert got[0] == {"event": "staff_ringing", "schema": 1, "summary": "住民税"}
    (only,) = await take(one_call, 1)
    assert only["event"] == "call_started"
    # A notice about a call reaches that call's viewers but is not a call event: no seq,
    # and a notice after the call ended does not bring the call back to the monitor.
    bus.publish_dict({"event": "staff_answered", "call_id": "a", "wall_time": 1.0})
    (notice,) = await take(one_call, 1)
    assert notice["event"] == "staff_answered" and "seq" not in notice
    bus.emit(CallEnded(call_id="a", t_ms=5.0, outcome="transferred", duration_ms=5.0))
    bus.publish_dict({"event": "staff_missed", "call_id": "a", "wall_time": 2.0})
    assert bus.active_calls() == []
    ended, missed = await take(one_call, 2)
    assert ended["seq"] == 2 and missed["event"] == "staff_missed"


@pytest.mark.asyncio
async def test_emit_from_another_thread_wakes_the_subscriber():
    bus = EventBus()
    sub = bus.subscribe()
    events = call_events("t", turns=3)

    def emit_all() -> None:
        for e in events:
            bus.emit(e)

    thread = threading.Thread(target=emit_all)
    thread.start()
    got = await take(sub, len(events))
    thread.join()
    assert [d["seq"] for d in got] == list(range(1, len(events) + 1))


@pytest.mark.asyncio
async def test_closing_a_subscription_ends_iteration_and_unregisters():
    bus = EventBus()
    sub = bus.subscribe()
    assert bus.subscriber_count == 1

    async def consume() -> list[dict]:
        return [d async for d in sub]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    bus.emit(call_events("x")[0])
    await asyncio.sleep(0)
    sub.close()
    assert [d["event"] for d in await asyncio.wait_for(task, 5)] == ["call_started"]
    assert bus.subscriber_count == 0
    async with bus.subscribe():
        assert bus.subscriber_count == 1
    assert bus.subscriber_count == 0
