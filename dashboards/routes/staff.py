"""担当者コンソール: transferred calls ring here; staff see the summary and answer.

The page lists ringing and connected calls (``GET /api/staff/calls``) and follows
changes live (``GET /api/staff/events``, Server-Sent Events from the console). 応答
posts the browser's SDP offer (microphone audio) to ``/api/staff/calls/{id}/answer``;
the first staff member to answer gets the call, anyone later gets 409. 終話 posts to
``/hangup``. Staff and admins only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from dashboards.accounts import User
from dashboards.app import render
from dashboards.live_streams import live_stream
from dashboards.security import require_role
from dashboards.services import Services, get_services
from dashboards.sse import sse

log = logging.getLogger(__name__)
router = APIRouter()

STAFF_ROLES = ("admin", "staff")
StaffUser = Annotated[User, Depends(require_role(*STAFF_ROLES))]
ServicesDep = Annotated[Services, Depends(get_services)]
HEARTBEAT_S = 10.0
QUEUED_EVENTS = 256  # console events waiting for one slow page at most
NOT_YOUR_CALL_MESSAGE = "この通話を切れるのは、応答した担当者と管理者だけです。"
UNAVAILABLE = "担当者コンソールは現在ご利用いただけません。"


class StaffOffer(BaseModel):
    """The staff browser's SDP offer (with its ICE candidates already gathered)."""

    sdp: str = Field(min_length=1, max_length=100_000)
    type: Literal["offer"] = "offer"


class StaffAnswer(BaseModel):
    sdp: str
    type: str
    call_id: str


def console_of(services: Services) -> Any:
    if services.staff_console is None:
        raise HTTPException(status_code=503, detail=UNAVAILABLE)
    return services.staff_console


@router.get("/staff", response_class=HTMLResponse, include_in_schema=False)
async def staff_page(request: Request, user: StaffUser, services: ServicesDep) -> Response:
    from dashboards.routes.phone import telephony_settings
    from telephony.webrtc import browser_ice_servers

    telephony = telephony_settings(services)
    return render(
        request,
        "staff.html",
        {
            "available": services.staff_console is not None,
            "ice_servers_json": json.dumps(browser_ice_servers(telephony.webrtc.ice_servers)),
        },
    )


@router.get("/api/staff/calls")
async def staff_calls(user: StaffUser, services: ServicesDep) -> dict[str, Any]:
    """Ringing and connected calls, oldest first, each with its handover summary."""
    return {"calls": console_of(services).calls()}


async def console_stream(request: Request, console: Any) -> AsyncIterator[bytes]:
    """The call list now, then every change, with heartbeats."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    subscription = console.subscribe()

    async def pump() -> None:
        try:
            async for event in subscription:
                if queue.qsize() >= QUEUED_EVENTS:  # a reader that stalls loses old news
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                queue.put_nowait(event)
        finally:
            queue.put_nowait(None)

    pumping = asyncio.create_task(pump(), name="staff-sse")
    try:
        await asyncio.sleep(0)  # subscribed before the snapshot: nothing falls between
        yield b"retry: 3000\n\n"
        yield sse("snapshot", {"calls": console.calls()})
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_S)
            except TimeoutError:
                if await request.is_disconnected():
                    break
                yield b": keep-alive\n\n"
                continue
            if event is None:
                break
            yield sse("console", event)
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pumping
        with contextlib.suppress(Exception):
            await subscription.aclose()


@router.get(
    "/api/staff/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def staff_events(request: Request, user: StaffUser, services: ServicesDep) -> Response:
    """``snapshot`` (the call list), then ``console`` events: staff_ringing, staff_connected,
    staff_ended, staff_missed, staff_abandoned."""
    console = console_of(services)
    return live_stream(request, user, console_stream(request, console), STAFF_ROLES)


@router.post("/api/staff/calls/{call_id}/answer", response_model=StaffAnswer)
async def staff_answer(
    call_id: str, offer: StaffOffer, user: StaffUser, services: ServicesDep
) -> StaffAnswer:
    """Answer a ringing call with this browser's microphone (SDP offer → answer)."""
    answer = await answer_call(console_of(services), call_id, offer, user.username)
    log.info("console: %s answered call %s", user.username, call_id)
    return answer


async def answer_call(
    console: Any, call_id: str, offer: StaffOffer, staff_user: str
) -> StaffAnswer:
    """``staff_user`` answers ``call_id`` with ``offer``; the console's refusals as HTTP
    errors (404 gone, 409 answered by another, 400 bad SDP)."""
    from telephony.staff_console import AlreadyAnswered, ConsoleCallGone
    from telephony.webrtc import SignallingError

    try:
        answer = await console.answer(call_id, offer.sdp, offer.type, staff_user)
    except ConsoleCallGone:
        raise HTTPException(status_code=404, detail="この通話はすでに終了しています。") from None
    except AlreadyAnswered:
        raise HTTPException(
            status_code=409, detail="この通話は別の担当者が応答しました。"
        ) from None
    except SignallingError as exc:
        raise HTTPException(
            status_code=400, detail=f"接続情報（SDP）が正しくありません: {exc}"
        ) from None
    return StaffAnswer(sdp=answer.sdp, type=answer.type, call_id=call_id)


@router.post("/api/staff/calls/{call_id}/hangup", status_code=204)
async def staff_hangup(call_id: str, user: StaffUser, services: ServicesDep) -> Response:
    """終話: end a connected call (both the caller and the staff leg). Only the staff member
    who answered it may, or an admin: no one ends a colleague's conversation."""
    from telephony.staff_console import ConsoleCallGone

    console = console_of(services)
    call = next((c for c in console.calls() if c.get("call_id") == call_id), None)
    if call is None:
        raise HTTPException(status_code=404, detail="この通話はすでに終了しています。")
    if user.role != "admin" and call.get("answered_by") != user.username:
        raise HTTPException(status_code=403, detail=NOT_YOUR_CALL_MESSAGE)
    try:
        await console.hangup(call_id, staff_user=user.username, admin=user.role == "admin")
    except ConsoleCallGone:
        raise HTTPException(status_code=404, detail="この通話はすでに終了しています。") from None
    except PermissionError:
        raise HTTPException(status_code=403, detail=NOT_YOUR_CALL_MESSAGE) from None
    return Response(status_code=204)
