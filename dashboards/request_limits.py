"""Request bodies: authorised before they are read, and never larger than their route allows.

``RequestGuard`` is plain ASGI middleware in front of the whole app. For each HTTP request
it finds the route that will answer, and then

* refuses a request to a route that needs a login with 401 (or the login redirect for a
  browser page), and one from a user without the route's role with 403, *before* a byte
  of the body is received. The route's ``require_role`` dependency still runs afterwards;
  this only makes sure a stranger's upload is never spooled, parsed or buffered;
* answers 413 at once when ``Content-Length`` is above the route's limit, and otherwise
  counts the bytes as they stream in (chunked bodies have no length), ending the request
  with 413 as soon as the limit is passed;
* ends a request whose body has not fully arrived within ``BODY_SECONDS`` with 408.

Limits are per route path (``ROUTE_BODY_LIMITS``) with a small default for everything
else, so a new route is bounded without anyone remembering to bound it.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.routing import get_route_path

from dashboards.accounts import lookup_session
from dashboards.faq_io import MAX_BYTES as FAQ_FILE_MAX_BYTES
from dashboards.security import (
    FORBIDDEN_MESSAGE,
    LOGIN_MESSAGE,
    SESSION_COOKIE,
    login_redirect_target,
    login_url,
)

DEFAULT_BODY_LIMIT = 256 * 1024  # JSON edits and forms: an FAQ entry is a few kilobytes
MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and the CSRF field around a file
ROUTE_BODY_LIMITS: dict[str, int] = {
    "/login": 16 * 1024,
    "/api/faq/import": FAQ_FILE_MAX_BYTES + MULTIPART_OVERHEAD,
    "/faq/import": FAQ_FILE_MAX_BYTES + MULTIPART_OVERHEAD,
}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A whole body must arrive within this time: a client trickling bytes cannot hold a
# worker, a spooled file or a parser forever (5 MB in 120 s is 44 kB/s).
BODY_SECONDS = 120.0


def _size_text(limit: int) -> str:
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):.1f}MB"
    return f"{limit // 1024}KB"


def too_large_message(limit: int) -> str:
    """Japanese for the operator, English after it for whoever reads the logs."""
    return (
        f"送信されたデータが大きすぎます（上限は{_size_text(limit)}です）。"
        f" Request body too large (limit {limit} bytes)."
    )


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` once a streamed body passes its route's limit."""

    def __init__(self, limit: int):
        super().__init__(status_code=413, detail=too_large_message(limit))


class BodyTimeout(StarletteHTTPException):
    """Raised from ``receive`` when a body trickles in slower than ``BODY_SECONDS`` allow."""

    def __init__(self) -> None:
        super().__init__(
            status_code=408,
            detail="送信に時間がかかりすぎたため、受け付けを中止しました。"
            " Request body not received in time.",
        )


def _dependant_roles(dependant: Any) -> frozenset[str] | None:
    """Roles of a route's ``require_role`` dependency, or None for a public route."""
    stack = list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        roles = getattr(dep.call, "roles", None)
        if roles is not None:
            return frozenset(roles)
        stack.extend(dep.dependencies)
    return None


@dataclass(frozen=True)
class _RouteRule:
    pattern: re.Pattern[str]
    methods: frozenset[str]
    path: str
    roles: frozenset[str] | None


def _route_rules(app: Any) -> list[_RouteRule]:
    """Every HTTP route of the app (included routers too) with the roles it requires."""
    rules = []
    for ctx in iter_route_contexts(app.routes):
        if not isinstance(ctx.original_route, APIRoute):
            continue
        methods = set(ctx.methods or ())
        if "GET" in methods:
            methods.add("HEAD")
        roles = _dependant_roles(ctx.dependant)
        rules.append(_RouteRule(ctx.path_regex, frozenset(methods), ctx.path, roles))
    return rules


class RequestGuard:
    """ASGI middleware: per-route body limits and the login check before the body."""

    def __init__(self, app: Any, limits: dict[str, int] | None = None, default: int | None = None):
        self.app = app
        self.limits = dict(ROUTE_BODY_LIMITS if limits is None else limits)
        self.default = DEFAULT_BODY_LIMIT if default is None else default
        self._rules: list[_RouteRule] | None = None

    def _rule(self, scope: dict) -> _RouteRule | None:
        if self._rules is None:  # routes are all included by the time requests arrive
            self._rules = _route_rules(scope["app"])
        path = get_route_path(scope)
        method = scope["method"]
        for rule in self._rules:
            if method in rule.methods and rule.pattern.match(path):
                return rule
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self._rule(scope)
        limit = self.limits.get(rule.path, self.default) if rule else self.default
        headers = headers_of(scope)
        has_body = b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"
        needs_login = rule is not None and rule.roles is not None
        if needs_login and (scope["method"] in BODY_METHODS or has_body):
            refusal = await self._refusal(scope, rule.roles)  # type: ignore[union-attr]
            if refusal is not None:
                await refusal(send)
                return
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _reply(scope, send, 400, "Content-Length が正しくありません。")
                return
            if length > limit:
                await _reply(scope, send, 413, too_large_message(limit))
                return

        received = 0
        complete = False
        deadline = asyncio.get_running_loop().time() + BODY_SECONDS

        async def counted_receive() -> dict:
            nonlocal received, complete
            if complete:  # after the body: waiting for a disconnect may take as long as it takes
                return await receive()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.001))
            except TimeoutError:
                raise BodyTimeout() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        started = False

        async def tracked_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] in (408, 413):  # the rest of the body is not wanted
                    kept = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                    message["headers"] = [*kept, (b"connection", b"close")]
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except (BodyTooLarge, BodyTimeout) as exc:
            if not started:
                await _reply(scope, send, exc.status_code, str(exc.detail))

    async def _refusal(self, scope: dict, roles: frozenset[str]) -> Any:
        """A responder for 401/403 when the session does not allow the route, else None."""
        conn = HTTPConnection(scope)
        token = conn.cookies.get(SESSION_COOKIE, "")
        services = scope["app"].state.services
        info = await run_in_threadpool(lookup_session, services.db, token) if token else None
        state = scope.setdefault("state", {})
        state["session_info"] = info
        state["user"] = info.user if info else None
        state["csrf_token"] = info.csrf_token if info else ""
        if info is None:
            if _wants_html(scope, headers_of(scope)):

                async def redirect(send: Any) -> None:
                    location = login_url(login_redirect_target(conn))  # type: ignore[arg-type]
                    await _send(send, 303, b"", b"text/plain", [(b"location", location.encode())])

                return redirect
            return lambda send: _reply(scope, send, 401, LOGIN_MESSAGE)
        if info.user.role not in roles:
            return lambda send: _reply(scope, send, 403, FORBIDDEN_MESSAGE)
        return None


def headers_of(scope: dict) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", [])}


def _wants_html(scope: dict, headers: dict[bytes, bytes]) -> bool:
    if scope.get("path", "").startswith("/api/"):
        return False
    return b"text/html" in headers.get(b"accept", b"")


async def _reply(scope: dict, send: Any, status: int, message: str) -> None:
    """A short answer that closes the connection (the unread body is never consumed)."""
    if _wants_html(scope, headers_of(scope)):
        from html import escape

        body = (
            '<!doctype html><html lang="ja"><meta charset="utf-8"><title>エラー</title>'
            f'<p>{escape(message)}</p><p><a href="/">トップへ戻る</a></p></html>'
        ).encode()
        await _send(send, status, body, b"text/html; charset=utf-8")
        return
    body = json.dumps({"detail": message}, ensure_ascii=False).encode()
    await _send(send, status, body, b"application/json")


async def _send(
    send: Any,
    status: int,
    body: bytes,
    media: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", media),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
