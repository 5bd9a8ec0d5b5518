"""Health, metrics and API documentation: for load balancers, Prometheus and integrators.

``/healthz`` and ``/metrics`` need no login (they reveal no personal data) so that
monitoring can reach them; ``/docs`` serves Swagger UI from local files, never a CDN.
A call node (``role = "call"``) serves only the probes (``create_probe_app``): no
operator page, no login, nothing but what a load balancer and Prometheus ask.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from dashboards.metrics import CONTENT_TYPE
from dashboards.services import Services, get_services

probes = APIRouter()

SWAGGER_ASSETS = "/docs/assets"


def _db_ok(services: Services) -> bool:
    try:
        with services.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def calls_in_progress(services: Services) -> int:
    """Calls connected now: the switchboard knows best, else the event counts."""
    if services.switchboard is not None:
        return len(services.switchboard.active)
    if services.metrics is not None:
        return services.metrics.active_calls
    return 0


@probes.get("/livez", tags=["system"])
async def livez() -> JSONResponse:
    """Liveness: the process and its event loop answer. Nothing else is checked, so that a
    database or broker outage never gets a healthy process restarted mid-call."""
    return JSONResponse({"status": "ok"})


@probes.get("/readyz", tags=["system"])
async def readyz(services: Annotated[Services, Depends(get_services)]) -> JSONResponse:
    """Readiness: on a node that takes calls, 200 once the bot is loaded and the phone side
    listens, and 503 while starting or draining (SIGTERM), so a load balancer sends calls
    elsewhere; on a web node (no calls), 200 while the shared database answers."""
    if services.settings.role == "web":
        reasons = [] if await run_in_threadpool(_db_ok, services) else ["database unreachable"]
        detail = "データベースに接続できません。"
    else:
        reasons = _call_side_reasons(services)
        detail = "通話を受け付ける準備ができていません（起動中または停止処理中です）。"
    if not reasons:
        return JSONResponse({"status": "ready", "reasons": []})
    body = {"status": "not ready", "reasons": reasons, "detail": detail}
    return JSONResponse(body, status_code=503)


def _call_side_reasons(services: Services) -> list[str]:
    """Why this node cannot take a new call now (empty: it can)."""
    reasons = []
    if services.bot is None:
        reasons.append("bot not loaded")
    if not services.phone_ready:
        reasons.append("phone side not listening")
    if services.switchboard is None or not services.switchboard.accepting:
        reasons.append("not accepting calls")
    return reasons


@probes.get("/healthz", tags=["system"])
async def healthz(services: Annotated[Services, Depends(get_services)]) -> JSONResponse:
    """Liveness and readiness: 200 when the database answers, else 503."""
    db_ok = await run_in_threadpool(_db_ok, services)
    body: dict[str, Any] = {
        "status": "ok" if db_ok else "degraded",
        "db": db_ok,
        "bot_loaded": services.bot is not None,
        "faq_entries": len(services.bot.understanding.faq) if services.bot is not None else None,
        "calls_in_progress": calls_in_progress(services),
        "accepting_calls": services.switchboard.accepting if services.switchboard else None,
    }
    return JSONResponse(body, status_code=200 if db_ok else 503)


@probes.get("/metrics", tags=["system"], response_class=Response)
def metrics(services: Annotated[Services, Depends(get_services)]) -> Response:
    """Prometheus text exposition."""
    sink = services.metrics
    if sink is None:
        return Response(b"", media_type=CONTENT_TYPE)
    if services.switchboard is not None:
        sink.calls_in_progress.set(len(services.switchboard.active))
    return Response(sink.render(), media_type=CONTENT_TYPE)


router = APIRouter()
router.include_router(probes)


@router.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    """Swagger UI with its scripts and styles served from this app."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="税務ボイスボット API",
        swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_ASSETS}/favicon-32x32.png",
    )


def create_probe_app(services: Services) -> FastAPI:
    """The HTTP server of a call node: /livez, /readyz, /healthz and /metrics only."""
    app = FastAPI(
        title="税務ボイスボット 通話ノード", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.services = services
    app.include_router(probes)
    return app
