"""テスト電話: call the bot from the browser over WebRTC, with a live transcript.

Signalling is one HTTP round trip: the page posts its SDP offer (ICE candidates
gathered), gets the answer and the call's id, and the call runs on the shared
switchboard like any phone call. The page follows the call on ``/api/phone/{id}/events``
(Server-Sent Events from the event bus, already masked) and sends keypad digits and
"ready" over the WebRTC data channel. It is a tool for checking the bot, so operators
and admins may use it (staff take calls at /staff, viewers only read); a call is
visible and can be hung up only by the user who made it (and admins).
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

PHONE_ROLES = ("admin", "operator")
PhoneUser = Annotated[User, Depends(require_role(*PHONE_ROLES))]
ServicesDep = Annotated[Services, Depends(get_services)]
HEARTBEAT_S = 10.0
MAX_SDP_CHARS = 100_000
CALLS_PER_USER = 1
ONE_CALL_MESSAGE = "テスト電話は1人1通話までです。いまの通話を切ってから、もう一度おかけください。"
BUSY_MESSAGE = (
    "テスト電話の同時通話数が上限に達しています。しばらくしてから、もう一度おかけください。"
)
# Why a call was refused (telephony.webrtc_endpoint.Refusal) -> status and message.
REFUSALS = {
    "unavailable": (503, "ボットが起動していないため、発信できません。"),
    "stopping": (503, "サービスを停止中のため、発信できません。"),
    "owner_busy": (429, ONE_CALL_MESSAGE),
    "full": (429, BUSY_MESSAGE),
    "bad_offer": (400, "接続情報（SDP）が正しくありません"),
}


class PhoneOffer(BaseModel):
    """The browser's SDP offer (with its ICE candidates already gathered)."""

    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)
    type: Literal["offer"] = "offer"


class PhoneAnswer(BaseModel):
    sdp: str
    type: str
    call_id: str


def telephony_settings(services: Services) -> Any:
    """``voicebot serve`` sets ``services.telephony``; otherwise the file/env settings."""
    settings = getattr(services, "telephony", None)
    if settings is None:
        from telephony.config import TelephonySettings

        settings = TelephonySettings()
        services.telephony = settings
    return settings


def webrtc_endpoint(services: Services) -> Any:
    """The WebRTC endpoint ``voicebot serve`` built; apps built without one (tests) get
    one over their switchboard, once."""
    if services.webrtc is None:
        from telephony.webrtc_endpoint import WebRtcEndpoint

        services.webrtc = WebRtcEndpoint(
            telephony_settings(services),
            services.switchboard,
            max_calls=services.settings.web.max_test_phone_calls,
            calls_per_owner=CALLS_PER_USER,
            staff_console=services.staff_console,
        )
    return services.webrtc


def own_call(services: Services, call_id: str, user: User) -> Any:
    """The user's own call in progress (admins: any); 404 otherwise."""
    call = webrtc_endpoint(services).call(call_id)
    if call is None or (call.owner != user.username and user.role != "admin"):
        raise HTTPException(status_code=404, detail="この通話は見つかりません。")
    return call


@router.get("/phone", response_class=HTMLResponse, include_in_schema=False)
async def phone_page(request: Request, user: PhoneUser, services: ServicesDep) -> Response:
    from telephony.webrtc import browser_ice_servers

    telephony = telephony_settings(services)
    available = webrtc_endpoint(services).available
    return render(
        request,
        "phone.html",
        {
            "available": available,
            "ice_servers_json": json.dumps(browser_ice_servers(telephony.webrtc.ice_servers)),
        },
    )


@router.post("/api/phone/offer", response_model=PhoneAnswer)
async def phone_offer(offer: PhoneOffer, user: PhoneUser, services: ServicesDep) -> PhoneAnswer:
    """Start a call to the bot: SDP offer in, SDP answer and the call's id out."""
    from telephony.webrtc_endpoint import CallRefused, Refusal

    endpoint = webrtc_endpoint(services)
    try:
        call_id, answer = await endpoint.accept(
            offer.sdp, offer.type, owner=user.username, caller=f"browser:{user.username}"
        )
    except CallRefused as refused:
        status, detail = REFUSALS[refused.reason.value]
        if refused.reason is Refusal.BAD_OFFER:
            detail = f"{detail}: {refused.detail}"
        raise HTTPException(status_code=status, detail=detail) from None
    return PhoneAnswer(sdp=answer.sdp, type=answer.type, call_id=call_id)


@router.post("/api/phone/{call_id}/hangup", status_code=204)
async def phone_hangup(call_id: str, user: PhoneUser, services: ServicesDep) -> Response:
    """End a test-phone call (the page's 切る button, or leaving the page)."""
    own_call(services, call_id, user)
    await webrtc_endpoint(services).hang_up(call_id)
    return Response(status_code=204)


def _snapshot(bus: Any, call_id: str) -> list[dict[str, Any]]:
    for call in bus.active_calls():
        if call.get("call_id") == call_id:
            events = call.get("transcript") or call.get("events") or []
            return sorted(events, key=lambda e: e.get("seq") or 0)
    return []


async def call_event_stream(request: Request, bus: Any, call_id: str) -> AsyncIterator[bytes]:
    """What was said so far in this call, then its live events, with heartbeats."""
    subscription = bus.subscribe(call_id)  # registered now: nothing is lost before the snapshot
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in subscription:
                queue.put_nowait(event)
        finally:
            queue.put_nowait(None)

    pumping = asyncio.create_task(pump(), name=f"phone-sse-{call_id}")
    try:
        yield b"retry: 3000\n\n"
        seen = 0
        for event in _snapshot(bus, call_id):
            seen = max(seen, event.get("seq") or 0)
            yield sse("call", event)
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
            seq = event.get("seq")
            if isinstance(seq, int) and seq <= seen:
                continue  # already in the snapshot
            yield sse("call", event)
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pumping
        with contextlib.suppress(Exception):
            subscription.close()


@router.get(
    "/api/phone/{call_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def phone_events(
    request: Request, call_id: str, user: PhoneUser, services: ServicesDep
) -> StreamingResponse:
    """This call's events (masked) as Server-Sent Events named ``call``."""
    own_call(services, call_id, user)
    if services.bus is None:
        raise HTTPException(status_code=503, detail="通話の表示は現在ご利用いただけません。")
    return live_stream(
        request, user, call_event_stream(request, services.bus, call_id), PHONE_ROLES
    )
