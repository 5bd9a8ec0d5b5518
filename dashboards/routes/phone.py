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
from dataclasses import dataclass
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


class PhoneOffer(BaseModel):
    """The browser's SDP offer (with its ICE candidates already gathered)."""

    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)
    type: Literal["offer"] = "offer"


class PhoneAnswer(BaseModel):
    sdp: str
    type: str
    call_id: str


@dataclass
class PhoneCall:
    """A test-phone call this app started, until its WebRTC connection ends."""

    call_id: str
    owner: str
    transport: Any  # telephony.webrtc.WebRtcTransport; None while the offer is answered
    task: asyncio.Task[Any] | None = None


def telephony_settings(services: Services) -> Any:
    """``voicebot serve`` sets ``services.telephony``; otherwise the file/env settings."""
    settings = getattr(services, "telephony", None)
    if settings is None:
        from telephony.config import TelephonySettings

        settings = TelephonySettings()
        services.telephony = settings
    return settings


def phone_calls(request: Request) -> dict[str, PhoneCall]:
    """This app's test-phone calls (kept on the app, so several apps can share a process)."""
    calls = getattr(request.app.state, "phone_calls", None)
    if calls is None:
        calls = request.app.state.phone_calls = {}
    return calls


def own_call(request: Request, call_id: str, user: User) -> PhoneCall:
    call = phone_calls(request).get(call_id)
    if call is None or call.transport is None:
        raise HTTPException(status_code=404, detail="この通話は見つかりません。")
    if call.owner != user.username and user.role != "admin":
        raise HTTPException(status_code=404, detail="この通話は見つかりません。")
    return call


@router.get("/phone", response_class=HTMLResponse, include_in_schema=False)
async def phone_page(request: Request, user: PhoneUser, services: ServicesDep) -> Response:
    from telephony.webrtc import browser_ice_servers

    telephony = telephony_settings(services)
    available = services.switchboard is not None and telephony.webrtc.enabled
    return render(
        request,
        "phone.html",
        {
            "available": available,
            "ice_servers_json": json.dumps(browser_ice_servers(telephony.webrtc.ice_servers)),
        },
    )


async def _run_call(services: Services, call: PhoneCall, caller: str) -> None:
    """The call on the switchboard; the line is closed unless staff took it over."""
    from voicebot.switchboard import SwitchboardClosed

    transport = call.transport
    outcome = None
    try:
        result = await services.switchboard.handle(transport, caller=caller, call_id=call.call_id)
        outcome = result.outcome
    except SwitchboardClosed:
        log.info("test phone %s: refused, the service is shutting down", call.call_id)
    except Exception:
        log.exception("test phone %s: the call failed", call.call_id)
    finally:
        if outcome != "transferred":  # after a transfer the staff bridge owns the line
            with contextlib.suppress(Exception):
                await transport.hangup()


@router.post("/api/phone/offer", response_model=PhoneAnswer)
async def phone_offer(
    request: Request, offer: PhoneOffer, user: PhoneUser, services: ServicesDep
) -> PhoneAnswer:
    """Start a call to the bot: SDP offer in, SDP answer and the call's id out."""
    from telephony.webrtc import SignallingError, WebRtcTransport

    telephony = telephony_settings(services)
    switchboard = services.switchboard
    if switchboard is None or not telephony.webrtc.enabled:
        raise HTTPException(status_code=503, detail="ボットが起動していないため、発信できません。")
    if not switchboard.accepting:
        raise HTTPException(status_code=503, detail="サービスを停止中のため、発信できません。")
    calls = phone_calls(request)
    # Each call holds media ports, an ASR/TTS turn and a switchboard line: counted before
    # the offer is answered, so that offers sent at once cannot all pass the check.
    if sum(c.owner == user.username for c in calls.values()) >= CALLS_PER_USER:
        raise HTTPException(status_code=429, detail=ONE_CALL_MESSAGE)
    if len(calls) >= services.settings.web.max_test_phone_calls:
        raise HTTPException(status_code=429, detail=BUSY_MESSAGE)
    call_id = switchboard.new_call_id()
    call = calls[call_id] = PhoneCall(call_id, user.username, None)
    try:
        transport, answer = await WebRtcTransport.answer(
            offer.sdp,
            offer.type,
            call_id=call_id,
            settings=telephony,
            staff_console=services.staff_console,
        )
    except SignallingError as exc:
        calls.pop(call_id, None)
        raise HTTPException(
            status_code=400, detail=f"接続情報（SDP）が正しくありません: {exc}"
        ) from None
    except BaseException:
        calls.pop(call_id, None)
        raise
    call.transport = transport
    transport.on_end(lambda _t: calls.pop(call_id, None))
    call.task = asyncio.create_task(
        _run_call(services, call, f"browser:{user.username}"), name=f"phone-{call_id}"
    )
    log.info("test phone %s: call from %s", call_id, user.username)
    return PhoneAnswer(sdp=answer.sdp, type=answer.type, call_id=call_id)


@router.post("/api/phone/{call_id}/hangup", status_code=204)
async def phone_hangup(request: Request, call_id: str, user: PhoneUser) -> Response:
    """End a test-phone call (the page's 切る button, or leaving the page)."""
    call = own_call(request, call_id, user)
    await call.transport.hangup()
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
    own_call(request, call_id, user)
    if services.bus is None:
        raise HTTPException(status_code=503, detail="通話の表示は現在ご利用いただけません。")
    return live_stream(
        request, user, call_event_stream(request, services.bus, call_id), PHONE_ROLES
    )
