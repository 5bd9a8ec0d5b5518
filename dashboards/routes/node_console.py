"""A call node's staff console, offered to the web node over the cluster's internal HTTP.

A call transferred to the console rings on the node that holds it. On a call node
(``role = "call"``), these routes let the web node's staff pages see and answer it: the
console's live events (SSE), its call list, and answer / hang up, which the web node
relays from a staff browser. The staff browser's WebRTC audio then flows to this node
directly (its ICE candidates are this node's addresses), and the console bridges it to
the caller as on a single machine.

Only a holder of the cluster secret gets in: ``NodeTokenGuard`` checks the bearer token
before anything else of the request is read, bounds a body by its declared length, and
the routes are not mounted at all when no secret is configured.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from dashboards.live_streams import SSE_HEADERS
from dashboards.routes.staff import StaffAnswer, StaffOffer, console_stream
from dashboards.services import Services, get_services

log = logging.getLogger(__name__)
router = APIRouter()

PREFIX = "/internal/staff"
MAX_BODY_BYTES = 128 * 1024  # an SDP offer with its candidates is a few kilobytes
MAX_STREAMS = 4  # one per web node; a few more while a restarted web node reconnects
ServicesDep = Annotated[Services, Depends(get_services)]
GONE = "この通話はすでに終了しています。"


class NodeTokenGuard:
    """ASGI middleware: requests under ``/internal/`` need ``Authorization: Bearer
    <secret>``, checked before the body is received; bodies must declare a length no
    larger than ``MAX_BODY_BYTES``. Other paths pass untouched."""

    def __init__(self, app: Any, secret: str):
        self.app = app
        self._expected = f"Bearer {secret}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/internal/"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if not hmac.compare_digest(headers.get(b"authorization", b""), self._expected):
            log.warning("internal console: refused a request without the cluster secret")
            await _refuse(send, 401, "unauthorised")
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = headers.get(b"content-length")
            if length is None or not length.isdigit():
                await _refuse(send, 411, "a body needs Content-Length")
                return
            if int(length) > MAX_BODY_BYTES:
                await _refuse(send, 413, "body too large")
                return
        await self.app(scope, receive, send)


async def _refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RelayedOffer(StaffOffer):
    """A staff browser's offer, relayed by the web node with who answers."""

    staff_user: str = Field(min_length=1, max_length=64)


class NodeCalls(BaseModel):
    node: str
    calls: list[dict[str, Any]]


def _console(services: Services) -> Any:
    if services.staff_console is None:
        raise HTTPException(status_code=503, detail="no staff console on this node")
    return services.staff_console


@router.get(f"{PREFIX}/events", response_class=StreamingResponse)
async def node_console_events(request: Request, services: ServicesDep) -> Response:
    """``snapshot`` (the call list), then every ``console`` event, with heartbeats."""
    console = _console(services)
    state = request.app.state

    async def counted() -> AsyncIterator[bytes]:
        # Counted while it streams (a stream that never starts holds nothing); one too
        # many ends at once, and its web node reconnects later.
        if getattr(state, "console_streams", 0) >= MAX_STREAMS:
            log.warning("internal console: %d streams open; one more refused", MAX_STREAMS)
            return
        state.console_streams = getattr(state, "console_streams", 0) + 1
        try:
            async for chunk in console_stream(request, console):
                yield chunk
        finally:
            state.console_streams -= 1

    return StreamingResponse(counted(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get(f"{PREFIX}/calls", response_model=NodeCalls)
async def node_console_calls(services: ServicesDep) -> NodeCalls:
    """Ringing and connected calls on this node, oldest first."""
    return NodeCalls(node=services.settings.node, calls=_console(services).calls())


@router.post(f"{PREFIX}/calls/{{call_id}}/answer", response_model=StaffAnswer)
async def node_console_answer(
    call_id: str, offer: RelayedOffer, services: ServicesDep
) -> StaffAnswer:
    """A staff browser answers (through the web node): its SDP offer → this node's answer."""
    from telephony.staff_console import AlreadyAnswered, ConsoleCallGone
    from telephony.webrtc import SignallingError

    console = _console(services)
    try:
        answer = await console.answer(call_id, offer.sdp, offer.type, offer.staff_user)
    except ConsoleCallGone:
        raise HTTPException(status_code=404, detail=GONE) from None
    except AlreadyAnswered:
        raise HTTPException(
            status_code=409, detail="この通話は別の担当者が応答しました。"
        ) from None
    except SignallingError as exc:
        raise HTTPException(
            status_code=400, detail=f"接続情報（SDP）が正しくありません: {exc}"
        ) from None
    log.info("console: %s answered call %s from the web node", offer.staff_user, call_id)
    return StaffAnswer(sdp=answer.sdp, type=answer.type, call_id=call_id)


@router.post(f"{PREFIX}/calls/{{call_id}}/hangup", status_code=204)
async def node_console_hangup(call_id: str, services: ServicesDep) -> Response:
    """終話 relayed by the web node (which checked who may)."""
    from telephony.staff_console import ConsoleCallGone

    try:
        await _console(services).hangup(call_id)
    except ConsoleCallGone:
        raise HTTPException(status_code=404, detail=GONE) from None
    return Response(status_code=204)
