"""The live monitor: calls in progress with their transcripts, pushed to the browser.

``GET /api/monitor/events`` is a Server-Sent Events stream fed by the in-process
``EventBus`` (events there are already masked). Each connection first gets a
``snapshot`` of every call in progress (``bus.active_calls()``), then one ``call``
event per call event. The subscription is opened before the snapshot is taken, so
nothing falls between the two; the page drops duplicates by ``seq``. A comment line
every few seconds keeps proxies from closing an idle stream and lets the server
notice a browser that went away. Listening in to the audio is not offered here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from dashboards.accounts import User
from dashboards.app import render
from dashboards.event_bus import GAP
from dashboards.live_streams import live_stream
from dashboards.security import require_role
from dashboards.services import Services, get_services
from dashboards.sse import sse

log = logging.getLogger(__name__)
router = APIRouter()

MONITOR_ROLES = ("admin", "operator", "staff", "viewer")

MonitorUser = Annotated[User, Depends(require_role(*MONITOR_ROLES))]
ServicesDep = Annotated[Services, Depends(get_services)]
HEARTBEAT_S = 10.0
QUEUE_LIMIT = 1000  # events buffered per browser before it is considered stuck


def snapshot_calls(active: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls in progress (``bus.active_calls()``) as the page replays them.

    Each call becomes its start (a ``call_started`` event made from the bus's call
    state) followed by its transcript events in order: the page rebuilds a call with
    the same code as live events, so a late joiner sees what an early one saw.
    """
    calls = []
    for call in active:
        call_id = call.get("call_id")
        if not call_id:
            continue
        started = {
            "event": "call_started",
            "call_id": call_id,
            "t_ms": 0,
            "wall_time": call.get("started_wall_time"),
            "transport": call.get("transport"),
            "caller": call.get("caller"),
        }
        events = [e for e in call.get("transcript", []) if isinstance(e, dict)]
        events.sort(key=lambda e: (e.get("seq") or 0, e.get("t_ms") or 0))
        calls.append(
            {
                "call_id": call_id,
                "started_wall_time": call.get("started_wall_time"),
                "state": call.get("state"),
                "events": [started, *events],
            }
        )
    return calls


@router.get("/monitor", response_class=HTMLResponse, include_in_schema=False)
async def monitor_page(
    request: Request,
    user: MonitorUser,
    services: ServicesDep,
) -> Response:
    from dashboards.routes.reports import faq_titles

    titles = await asyncio.to_thread(faq_titles, services)
    return render(request, "monitor.html", {"faq_titles": titles})


async def _pump(subscription: AsyncIterator[dict[str, Any]], queue: asyncio.Queue) -> None:
    """Moves bus events to this browser's queue; a full queue ends the stream."""
    try:
        async for event in subscription:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("monitor stream too slow; closing it (the page reconnects)")
                break
    finally:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)  # end of stream (if full, the reader sees the task done)


async def event_stream(request: Request, services: Services) -> AsyncIterator[bytes]:
    """Snapshot, then live events, with heartbeats; ends when the browser leaves."""
    bus = services.bus
    assert bus is not None
    subscription = bus.subscribe()
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_LIMIT)
    # Start consuming before the snapshot so that events in between are not lost.
    pump = asyncio.create_task(_pump(subscription, queue), name="monitor-sse")
    try:
        await asyncio.sleep(0)
        yield b"retry: 3000\n\n"
        yield sse("snapshot", {"calls": snapshot_calls(bus.active_calls())})
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_S)
            except TimeoutError:
                if pump.done() or await request.is_disconnected():
                    break
                yield b": keep-alive\n\n"
                continue
            if event is None:
                break
            if event.get("event") == GAP:
                # This browser fell behind and lost events: start it over from the state.
                yield sse("snapshot", {"calls": snapshot_calls(bus.active_calls())})
                continue
            yield sse("call", event)
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
        aclose = getattr(subscription, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


@router.get(
    "/api/monitor/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def monitor_events(
    request: Request,
    user: MonitorUser,
    services: ServicesDep,
) -> StreamingResponse:
    """Live call events (masked) as Server-Sent Events: ``snapshot`` first, then ``call``."""
    if services.bus is None:
        raise HTTPException(status_code=503, detail="ライブモニターは現在ご利用いただけません。")
    return live_stream(request, user, event_stream(request, services), MONITOR_ROLES)


@router.get("/api/monitor/calls")
async def monitor_calls(
    user: MonitorUser,
    services: ServicesDep,
) -> dict[str, Any]:
    """Calls in progress with their events so far (the same as the stream's snapshot)."""
    if services.bus is None:
        raise HTTPException(status_code=503, detail="ライブモニターは現在ご利用いただけません。")
    return {"calls": snapshot_calls(services.bus.active_calls())}
