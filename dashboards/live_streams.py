"""Live event streams (SSE): few per login, and never outliving the login.

A stream is a response that does not end on its own, so every one (monitor, staff
console, test phone) goes through ``live_stream``:

* it lives only as long as its login: the session is looked up again on every heartbeat
  and every ``RECHECK_EVERY`` events, and the stream ends when the session is gone (logout,
  deactivation, password change), the user no longer holds one of the route's roles, or
  the session's expiry time has come;
* a user may hold ``PER_USER`` streams at once and all users together half of
  ``web.max_connections``; beyond that the answer is 429, so one logged-in browser cannot
  take every connection and leave ``/healthz`` and ``/login`` without one.
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections.abc import AsyncIterator, Iterable

from fastapi import HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dashboards.accounts import User, lookup_session, utcnow
from dashboards.security import SESSION_COOKIE

PER_USER = 3
RECHECK_EVERY = 50  # events between session checks when events come faster than heartbeats
HEARTBEAT_PREFIX = b":"  # SSE comment lines (keep-alive) start with a colon
TOO_MANY_MESSAGE = (
    "同時に開いているライブ画面が多すぎます。ほかのタブやウィンドウを閉じてから、"
    "もう一度お試しください。"
)
BUSY_MESSAGE = "ライブ画面の接続数が上限に達しています。しばらくしてから、もう一度お試しください。"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class StreamSlots:
    """Counts the open streams, per user and in all; thread-safe."""

    def __init__(self, total: int, per_user: int = PER_USER):
        self.total = max(1, total)
        self.per_user = per_user
        self._lock = threading.Lock()
        self._by_user: dict[int, int] = {}

    def open_count(self) -> int:
        with self._lock:
            return sum(self._by_user.values())

    def take(self, user_id: int) -> None:
        """One more stream for ``user_id``, or 429 (per user first: the likelier cause)."""
        with self._lock:
            if self._by_user.get(user_id, 0) >= self.per_user:
                raise HTTPException(status_code=429, detail=TOO_MANY_MESSAGE)
            if sum(self._by_user.values()) >= self.total:
                raise HTTPException(status_code=429, detail=BUSY_MESSAGE)
            self._by_user[user_id] = self._by_user.get(user_id, 0) + 1

    def give_back(self, user_id: int) -> None:
        with self._lock:
            left = self._by_user.get(user_id, 0) - 1
            if left > 0:
                self._by_user[user_id] = left
            else:
                self._by_user.pop(user_id, None)


def stream_slots(request: Request) -> StreamSlots:
    """The app's slots: half the web server's connections (the rest for pages and probes)."""
    state = request.app.state
    slots = getattr(state, "stream_slots", None)
    if slots is None:
        web = state.services.settings.web
        slots = state.stream_slots = StreamSlots(web.max_connections // 2)
    return slots


async def _session_allows(request: Request, token: str, roles: frozenset[str]) -> bool:
    db = request.app.state.services.db
    info = await run_in_threadpool(lookup_session, db, token)
    return info is not None and info.user.role in roles


async def session_bound(
    request: Request,
    chunks: AsyncIterator[bytes],
    roles: Iterable[str],
    expires_at: dt.datetime | None,
) -> AsyncIterator[bytes]:
    """``chunks`` for as long as the request's login session still allows them."""
    token = request.cookies.get(SESSION_COOKIE, "")
    allowed = frozenset(roles)
    since_check = 0
    try:
        async for chunk in chunks:
            if expires_at is not None and utcnow() >= expires_at:
                break
            since_check += 1
            if chunk.startswith(HEARTBEAT_PREFIX) or since_check >= RECHECK_EVERY:
                since_check = 0
                if not await _session_allows(request, token, allowed):
                    break
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def live_stream(
    request: Request, user: User, chunks: AsyncIterator[bytes], roles: Iterable[str]
) -> StreamingResponse:
    """The SSE response for ``chunks``: counted against the user's and the app's limits,
    and ended with the login session. Raises 429 when no stream may be opened."""
    slots = stream_slots(request)
    user_id = user.id
    slots.take(user_id)
    released = threading.Event()

    def give_back() -> None:
        if not released.is_set():
            released.set()
            slots.give_back(user_id)

    info = getattr(request.state, "session_info", None)
    expires_at = info.expires_at if info is not None else None

    async def counted() -> AsyncIterator[bytes]:
        try:
            async for chunk in session_bound(request, chunks, roles, expires_at):
                yield chunk
        finally:
            give_back()

    body = counted()
    # A response never sent (the browser left first) never runs the generator's finally.
    weakref.finalize(body, give_back)
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)
