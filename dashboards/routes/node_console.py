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

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from dashboards.live_streams import SSE_HEADERS
from dashboards.routes.staff import StaffAnswer, StaffOffer, answer_call, console_stream
from dashboards.services import Services, get_services

log = logging.getLogger(__name__)
router = APIRouter()

PREFIX = "/internal/staff"
MAX_BODY_BYTES = 128 * 1024  # an SDP offer with its candidates is a few kilobytes
MAX_STREAMS = 4  # one per web node, and room for a restarted one; beyond, the oldest ends
REFUSAL_LOG_EVERY_S = 10.0  # refused strangers are logged at most this often
ServicesDep = Annotated[Services, Depends(get_services)]
GONE = "この通話はすでに終了しています。"


class NodeTokenGuard:
    """ASGI middleware: requests under ``/internal/`` need ``Authorization: Bearer
    <secret>``, checked before the body is received; bodies must declare a length no
    larger than ``MAX_BODY_BYTES``. Other paths pass untouched."""

    def __init__(self, app: Any, secret: str):
        self.app = app
        self._expected = f"Bearer {secret}".encode()
        self._last_refusal_log = -REFUSAL_LOG_EVERY_S

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/internal/"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if not hmac.compare_digest(headers.get(b"authorization", b""), self._expected):
            now = time.monotonic()
            if now - self._last_refusal_log >= REFUSAL_LOG_EVERY_S:  # no log flood
                self._last_refusal_log = now
                log.warning("internal API: refused a request without the cluster secret")
            await _refuse(send, 401, "unauthorised")
            return
        if b"transfer-encoding" in headers:  # a length we can trust, or nothing
            await _refuse(send, 411, "a body needs Content-Length, not Transfer-Encoding")
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
        # Counted while it streams (a stream that never starts holds nothing). At the cap
        # the oldest stream is ended (within a heartbeat): a web node that vanished without
        # closing its connection never keeps a restarted one out.
        streams: deque[asyncio.Event] | None = getattr(state, "console_streams", None)
        if streams is None:
            streams = state.console_streams = deque()
        if len(streams) >= MAX_STREAMS:
            log.warning("internal console: %d streams open; ending the oldest", MAX_STREAMS)
            streams.popleft().set()
        ended = asyncio.Event()
        streams.append(ended)
        try:
            async for chunk in console_stream(request, console):
                if ended.is_set():
                    break
                yield chunk
        finally:
            with contextlib.suppress(ValueError):
                streams.remove(ended)

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
    answer = await answer_call(_console(services), call_id, offer, offer.staff_user)
    log.info("console: %s answered call %s from the web node", offer.staff_user, call_id)
    return answer


class RelayedHangup(BaseModel):
    """終話 relayed by the web node: who pressed it (this node checks they answered)."""

    staff_user: str = Field(min_length=1, max_length=64)
    admin: bool = False


@router.post(f"{PREFIX}/calls/{{call_id}}/hangup", status_code=204)
async def node_console_hangup(
    call_id: str, hangup: RelayedHangup, services: ServicesDep
) -> Response:
    """終話 relayed by the web node; only the staff member who answered, or an admin."""
    from telephony.staff_console import ConsoleCallGone

    try:
        await _console(services).hangup(call_id, staff_user=hangup.staff_user, admin=hangup.admin)
    except ConsoleCallGone:
        raise HTTPException(status_code=404, detail=GONE) from None
    except PermissionError:
        raise HTTPException(status_code=403, detail="応答した担当者ではありません。") from None
    return Response(status_code=204)
