"""The operator and staff web app: one FastAPI application built from ``Services``.

``create_app`` prepares the database (tables, the first admin, FAQ version 1), includes
every router listed in ``dashboards.routes.ROUTER_MODULES`` plus ``services.extra_routers``,
serves ``/static`` and renders Jinja2 pages that extend ``base.html``. Nothing is loaded
from the internet: pages, styles and scripts are all served from here.

Routers render pages with ``render(request, "name.html", {...})`` so that every page
gets the navigation, the logged-in user and the CSRF token.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from dashboards.accounts import ROLE_LABELS, ensure_initial_admin
from dashboards.faq_versions import FaqVersions
from dashboards.login_throttle import LoginGate
from dashboards.request_limits import RequestGuard
from dashboards.routes import ROUTER_MODULES
from dashboards.security import NotAuthenticated, login_url, wants_html
from dashboards.services import Services

log = logging.getLogger(__name__)

JAPAN = ZoneInfo("Asia/Tokyo")
HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

# The navigation of every page: (label, path, roles that see it; empty = everyone).
NAV: list[tuple[str, str, tuple[str, ...]]] = [
    ("FAQ編集", "/faq", ()),
    ("未回答の質問", "/unanswered", ()),
    ("ライブモニター", "/monitor", ()),
    ("レポート", "/reports", ()),
    ("担当者コンソール", "/staff", ("admin", "staff")),
    ("テスト電話", "/phone", ("admin", "operator")),
    ("ユーザー管理", "/users", ("admin",)),
    ("操作履歴", "/audit", ("admin",)),
]

STATUS_MESSAGES = {
    400: "リクエストの内容が正しくありません。",
    401: "ログインが必要です。",
    403: "この操作を行う権限がありません。",
    404: "ページが見つかりません。",
    405: "この方法ではアクセスできません。",
    413: "ファイルが大きすぎます。",
    422: "入力内容に誤りがあります。",
    500: "サーバーで問題が発生しました。時間をおいてもう一度お試しください。",
    503: "ただいまこの機能はご利用いただけません。",
}


def local_time(value: Any, seconds: bool = False) -> str:
    """A stored UTC time (naive datetime or ISO text) as Japan time for the pages.

    Records are kept in UTC; operators read times as the wall clock of the city office.
    """
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.removesuffix("Z"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(JAPAN).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def nav_for(user: Any) -> list[dict[str, str]]:
    if user is None:
        return []
    return [
        {"label": label, "href": href}
        for label, href, roles in NAV
        if not roles or user.role in roles
    ]


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A page from ``dashboards/templates`` with the navigation, user and CSRF token."""
    user = getattr(request.state, "user", None)
    ctx = {
        "user": user,
        "role_label": ROLE_LABELS.get(user.role, "") if user is not None else "",
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "nav": nav_for(user),
        "current_path": request.url.path,
        **(context or {}),
    }
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)


def _error_response(request: Request, status: int, detail: Any) -> Response:
    message = detail if isinstance(detail, str) else STATUS_MESSAGES.get(status, "エラーです。")
    if wants_html(request):
        return render(
            request,
            "error.html",
            {"status": status, "message": message or STATUS_MESSAGES.get(status, "")},
            status_code=status,
        )
    return JSONResponse({"detail": detail}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotAuthenticated)
    async def _not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if wants_html(request):
            return RedirectResponse(login_url(exc.next_url), status_code=303)
        return JSONResponse({"detail": str(exc)}, status_code=401)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = _error_response(request, exc.status_code, exc.detail)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if wants_html(request):
            return _error_response(request, 422, STATUS_MESSAGES[422])
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)


def _include_routers(app: FastAPI, services: Services) -> None:
    for name in ROUTER_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            log.debug("router %s not present; skipped", name)
            continue
        app.include_router(module.router)
    for router in services.extra_routers:
        app.include_router(router)


def _mount_swagger_assets(app: FastAPI) -> None:
    """Swagger UI's files for /docs, from the swagger-ui-bundle package (no CDN)."""
    from dashboards.routes.system import SWAGGER_ASSETS

    try:
        import swagger_ui_bundle
    except ImportError:
        log.warning("swagger-ui-bundle not installed: /docs cannot show its page")
        return
    app.mount(
        SWAGGER_ASSETS,
        StaticFiles(directory=str(swagger_ui_bundle.swagger_ui_path)),
        name="swagger-assets",
    )


INITIAL_ADMIN_PASSWORD_FILE = "initial-admin-password.txt"


def write_private_file(path: Path, text: str) -> Path:
    """``text`` in ``path``, readable and writable by this user only (0600 from creation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a file left by someone else keeps its own mode
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def prepare_database(services: Services) -> FaqVersions:
    """Tables, the first admin user and FAQ version 1 (all idempotent)."""
    services.db.create_all()
    generated = ensure_initial_admin(services.db, services.settings.web.initial_admin_password)
    if generated is not None:
        # Logs are collected and kept widely: the password goes to a file only the service
        # user may read; the admin changes it after logging in (and may delete the file).
        path = write_private_file(
            Path(services.settings.data_dir) / INITIAL_ADMIN_PASSWORD_FILE, generated + "\n"
        )
        log.warning("created the first web user 'admin'; its password is in %s", path)
    faq_versions = FaqVersions.for_services(services)
    faq_versions.ensure_initial_version()
    return faq_versions


# Pages may load nothing from elsewhere: no CDN scripts, fonts or images.
CONTENT_SECURITY_POLICY = (
    "default-src 'self' 'unsafe-inline' data: blob:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
]


class SecurityHeaders:
    """Plain ASGI middleware (streams pass through untouched) adding security headers."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(services: Services) -> FastAPI:
    """The web app over ``services``; prepares the database on the way."""
    from dashboards.metrics import MetricsSink

    if services.metrics is None:
        services.metrics = MetricsSink()
    faq_versions = prepare_database(services)
    app = FastAPI(
        title="税務ボイスボット 管理画面 API",
        description="FAQ編集・通話記録・レポート・担当者コンソールのAPIです。",
        version="1",
        docs_url=None,  # /docs is served with local assets by routes.system
        redoc_url=None,
    )
    app.state.services = services
    app.state.templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    app.state.templates.env.filters["local_time"] = local_time
    app.state.faq_versions = faq_versions
    app.state.login_gate = LoginGate()
    _install_error_handlers(app)
    _include_routers(app, services)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    _mount_swagger_assets(app)

    app.add_middleware(RequestGuard)  # inside SecurityHeaders: its refusals get the headers
    app.add_middleware(SecurityHeaders)
    return app


__all__ = ["HTTPException", "create_app", "render"]
