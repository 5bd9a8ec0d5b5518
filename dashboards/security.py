"""Who may call what: the login-session dependency, roles and CSRF protection.

Every route that needs a login declares ``Depends(require_role(...))``. Anonymous
requests get 401 JSON (API) or a redirect to the login page (browser pages); a user
without one of the roles gets 403. Unsafe methods (POST, PUT, PATCH, DELETE) must also
carry the session's CSRF token: HTML forms in a ``csrf_token`` field, ``fetch`` calls in
the ``X-CSRF-Token`` header (pages read it from ``<meta name="csrf-token">``), and a
foreign ``Origin`` is refused outright.

Usage in a router::

    @router.get("/api/things")
    def things(user: User = Depends(require_role("admin", "operator"))) -> list[dict]: ...
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from dashboards.accounts import ROLES, SessionInfo, User, lookup_session

SESSION_COOKIE = "voicebot_session"
LOGIN_CSRF_COOKIE = "voicebot_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

CSRF_MESSAGE = (
    "画面の有効期限が切れたか、正しくない送信です。"
    "ページを再読み込みしてから、もう一度お試しください。"
)
FORBIDDEN_MESSAGE = "この操作を行う権限がありません。"
LOGIN_MESSAGE = "ログインが必要です。"


class NotAuthenticated(Exception):
    """No valid session: the app answers 401 (API) or redirects to /login (pages)."""

    def __init__(self, next_url: str = "/"):
        super().__init__(LOGIN_MESSAGE)
        self.next_url = next_url


def wants_html(request: Request) -> bool:
    """A browser page request (not /api/, and HTML accepted), answered with pages."""
    if request.url.path.startswith("/api/"):
        return False
    return "text/html" in request.headers.get("accept", "")


def login_redirect_target(request: Request) -> str:
    """The path (and query) to come back to after logging in."""
    url = request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url


def login_url(next_url: str) -> str:
    return "/login?next=" + quote(next_url, safe="")


def safe_next(next_url: str | None) -> str:
    """Only local paths are followed after login (no open redirect)."""
    if not next_url or not next_url.startswith("/") or next_url.startswith("//"):
        return "/"
    parts = urlsplit(next_url)
    if parts.scheme or parts.netloc or "\\" in next_url:
        return "/"
    return next_url


async def current_session(request: Request) -> SessionInfo | None:
    """The request's session, looked up once per request (off the event loop)."""
    if hasattr(request.state, "session_info"):
        return request.state.session_info
    token = request.cookies.get(SESSION_COOKIE, "")
    services = request.app.state.services
    info = await run_in_threadpool(lookup_session, services.db, token) if token else None
    request.state.session_info = info
    request.state.user = info.user if info else None
    request.state.csrf_token = info.csrf_token if info else ""
    return info


def _origin_ok(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


async def check_csrf(request: Request, expected: str) -> None:
    """403 unless an unsafe request carries ``expected`` (header or form field)."""
    if request.method not in UNSAFE_METHODS:
        return
    if not _origin_ok(request):
        raise HTTPException(status_code=403, detail=CSRF_MESSAGE)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
        try:
            form = await request.form()  # cached by Starlette; the route still reads it
        except HTTPException:
            raise  # the body was too large or too slow (dashboards.request_limits)
        except Exception:
            form = None
        value = form.get(CSRF_FIELD) if form is not None else None
        sent = value if isinstance(value, str) else None
    if not sent or not expected or not secrets.compare_digest(sent, expected):
        raise HTTPException(status_code=403, detail=CSRF_MESSAGE)


def require_role(*roles: str) -> Callable[[Request], Coroutine[Any, Any, User]]:
    """Dependency: the logged-in ``User`` holding one of ``roles`` (any role if none given)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s): {sorted(unknown)}")
    allowed = frozenset(roles or ROLES)

    async def dependency(request: Request) -> User:
        info = await current_session(request)
        if info is None:
            raise NotAuthenticated(login_redirect_target(request))
        if info.user.role not in allowed:
            raise HTTPException(status_code=403, detail=FORBIDDEN_MESSAGE)
        await check_csrf(request, info.csrf_token)
        return info.user

    dependency.__name__ = f"require_role_{'_'.join(sorted(allowed))}"
    dependency.roles = allowed  # type: ignore[attr-defined]  # read by the authorization tests
    return dependency


def set_session_cookie(response: Response, token: str, secure: bool, hours: float) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(hours * 3600),
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )


def clear_session_cookie(response: Response, secure: bool) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")


def issue_login_csrf(response: Response, secure: bool, token: str | None = None) -> str:
    """A double-submit token for the login form (there is no session yet), set as a cookie."""
    token = token or secrets.token_urlsafe(24)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, secure=secure, samesite="strict"
    )
    return token


def login_csrf_ok(request: Request, sent: str | None) -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return bool(sent and cookie and secrets.compare_digest(sent, cookie)) and _origin_ok(request)
