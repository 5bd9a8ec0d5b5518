"""Logging in and out, the start page, user administration and the audit log (admins)."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dashboards import audit
from dashboards.accounts import (
    ROLE_LABELS,
    AccountError,
    LoginError,
    User,
    authenticate,
    create_session,
    create_user,
    end_session,
    get_user,
    list_users,
    update_user,
)
from dashboards.app import render
from dashboards.flash import flash_query, verified_flash
from dashboards.login_throttle import LoginGate, LoginRefused
from dashboards.security import (
    SESSION_COOKIE,
    clear_session_cookie,
    current_session,
    issue_login_csrf,
    login_csrf_ok,
    require_role,
    safe_next,
    set_session_cookie,
)
from dashboards.services import Services, get_services

router = APIRouter()
UNKNOWN_USER = "不明なユーザー"  # the audit log's name for a login with no such account

RoleName = Literal["admin", "operator", "staff", "viewer"]
UsernamePath = Annotated[str, Path(min_length=1, max_length=64)]


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _secure(request: Request, services: Services) -> bool:
    """Cookies are Secure when configured, and always when the page came over HTTPS.

    ``[web] secure_cookies`` covers a TLS proxy that does not say so; the scheme check
    means an HTTPS deployment never sends its session over plain HTTP by mistake.
    """
    return services.settings.web.secure_cookies or request.url.scheme == "https"


def _login_page(
    request: Request,
    services: Services,
    next_url: str,
    error: str | None = None,
    username: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    # The same token goes into the form and a cookie (double submit: no session yet).
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"next_url": next_url, "error": error, "username": username, "login_csrf": token},
        status_code=status_code,
    )
    issue_login_csrf(response, _secure(request, services), token)
    return response


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_form(
    request: Request,
    services: Annotated[Services, Depends(get_services)],
    next: Annotated[str, Query(max_length=2000)] = "/",
) -> Response:
    target = safe_next(next)
    if await current_session(request) is not None:
        return RedirectResponse(target, status_code=303)
    request.state.user = None  # the login page shows no navigation
    return _login_page(request, services, target)


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_submit(
    request: Request,
    services: Annotated[Services, Depends(get_services)],
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    target = safe_next(next)
    request.state.user = None
    if not login_csrf_ok(request, csrf_token):
        return _login_page(
            request,
            services,
            target,
            "画面の有効期限が切れました。もう一度ログインしてください。",
            username,
            403,
        )
    if not username or not password:
        return _login_page(
            request, services, target, "ユーザー名とパスワードを入力してください。", username, 400
        )
    db = services.db
    gate: LoginGate = request.app.state.login_gate
    source = _client(request)
    try:
        async with gate.check(source):
            user = await run_in_threadpool(authenticate, db, username, password)
    except LoginRefused as exc:
        return _login_page(request, services, target, str(exc), username, 429)
    except LoginError as exc:
        gate.record_failure(source)
        # People type passwords into the user name field: a name no account has is kept
        # out of the audit log.
        typed = username.strip()[:64]
        known = await run_in_threadpool(get_user, db, typed) if typed else None
        await run_in_threadpool(
            audit.record,
            db,
            known.username if known is not None else UNKNOWN_USER,
            "login_failed",
            summary="アカウントロック中" if exc.locked else "ユーザー名またはパスワードの誤り",
            client=_client(request),
        )
        return _login_page(
            request, services, target, str(exc), username, 429 if exc.locked else 401
        )
    web = services.settings.web
    previous = request.cookies.get(SESSION_COOKIE, "")
    if previous:
        # A fresh token on every login: a session id planted before login never becomes live.
        await run_in_threadpool(end_session, db, previous)
    token, _info = await run_in_threadpool(create_session, db, user, web.session_hours)
    await run_in_threadpool(audit.record, db, user.username, "login", client=_client(request))
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, token, _secure(request, services), web.session_hours)
    return response


@router.post("/logout", include_in_schema=False)
async def logout(
    request: Request,
    user: Annotated[User, Depends(require_role())],
    services: Annotated[Services, Depends(get_services)],
) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    await run_in_threadpool(end_session, services.db, token)
    await run_in_threadpool(
        audit.record, services.db, user.username, "logout", client=_client(request)
    )
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, _secure(request, services))
    return response


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home(request: Request, user: Annotated[User, Depends(require_role())]) -> HTMLResponse:
    return render(request, "home.html")


# --- users (admins) ---------------------------------------------------------------------


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    role: RoleName
    password: str = Field(min_length=1, max_length=1000)
    display_name: str = Field("", max_length=100)


class UserChange(BaseModel):
    role: RoleName | None = None
    active: bool | None = None
    display_name: str | None = Field(None, max_length=100)
    password: str | None = Field(None, min_length=1, max_length=1000)


def _create_user_audited(services: Services, admin: User, new: NewUser, client: str) -> dict:
    user = create_user(services.db, new.username, new.role, new.password, new.display_name)
    audit.record(
        services.db,
        admin.username,
        "user_create",
        target=user.username,
        summary=f"{user.username}（{ROLE_LABELS[user.role]}）を追加",
        after=user.public(),
        client=client,
    )
    return user.public()


def _update_user_audited(
    services: Services, admin: User, username: str, change: UserChange, client: str
) -> dict:
    if username == admin.username and (
        change.active is False or change.role not in (None, "admin")
    ):
        raise AccountError("ご自身の権限の変更や無効化はできません。")
    before, after = update_user(services.db, username, **change.model_dump(exclude_none=True))
    audit.record(
        services.db,
        admin.username,
        "user_update",
        target=username,
        summary="、".join(k for k in change.model_dump(exclude_none=True)) + "を変更",
        before=before,
        after=after,
        client=client,
    )
    after.pop("password", None)
    return after


@router.get("/api/users", tags=["users"])
def api_users(
    _user: Annotated[User, Depends(require_role("admin"))],
    services: Annotated[Services, Depends(get_services)],
) -> list[dict]:
    """All users (admins only)."""
    return [u.public() for u in list_users(services.db)]


@router.post("/api/users", status_code=201, tags=["users"])
def api_create_user(
    new: NewUser,
    request: Request,
    admin: Annotated[User, Depends(require_role("admin"))],
    services: Annotated[Services, Depends(get_services)],
) -> dict:
    """Add a user (admins only)."""
    try:
        return _create_user_audited(services, admin, new, _client(request))
    except AccountError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc


@router.patch("/api/users/{username}", tags=["users"])
def api_update_user(
    username: UsernamePath,
    change: UserChange,
    request: Request,
    admin: Annotated[User, Depends(require_role("admin"))],
    services: Annotated[Services, Depends(get_services)],
) -> dict:
    """Change a user's role, name, password or active flag (admins only)."""
    try:
        return _update_user_audited(services, admin, username, change, _client(request))
    except AccountError as exc:
        status = 404 if "見つかりません" in str(exc) else 400
        raise HTTPException(status_code=status, detail=str(exc)) from exc


@router.get("/users", response_class=HTMLResponse, include_in_schema=False)
def users_page(
    request: Request,
    _admin: Annotated[User, Depends(require_role("admin"))],
    services: Annotated[Services, Depends(get_services)],
    flash: Annotated[str | None, Query(max_length=500)] = None,
    kind: Annotated[str | None, Query(max_length=10)] = None,
) -> HTMLResponse:
    flash, kind = verified_flash(request, flash, kind)  # only notices this app wrote
    return _users_page(request, services, flash, kind)


def _users_page(
    request: Request, services: Services, message: str | None, kind: str | None
) -> HTMLResponse:
    return render(
        request,
        "users.html",
        {
            "users": list_users(services.db),
            "roles": ROLE_LABELS,
            "flash": message,
            "flash_kind": "error" if kind == "error" else "ok",
        },
    )


@router.post("/users", include_in_schema=False)
def users_create_form(
    request: Request,
    admin: Annotated[User, Depends(require_role("admin"))],
    services: Annotated[Services, Depends(get_services)],
    username: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=20)] = "viewer",
    password: Annotated[str, Form(max_length=1000)] = "",
    display_name: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    try:
        if role not in ROLE_LABELS:
            raise AccountError("権限を選んでください。")
        new = NewUser.model_construct(
            username=username, role=role, password=password, display_name=display_name
        )
        _create_user_audited(services, admin, new, _client(request))
    except AccountError as exc:
        return _users_page(request, services, str(exc), "error")
    message = f"ユーザー「{username}」を追加しました。"
    return RedirectResponse("/users?" + flash_query(request, message), 303)


@router.post("/users/{username}", include_in_schema=False)
def users_update_form(
    username: UsernamePath,
    request: Request,
    admin: Annotated[User, Depends(require_role("admin"))],
    services: Annotated[Services, Depends(get_services)],
    role: Annotated[str, Form(max_length=20)] = "",
    active: Annotated[str, Form(max_length=5)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    try:
        if role and role not in ROLE_LABELS:
            raise AccountError("権限を選んでください。")
        change = UserChange.model_construct(
            role=role or None,
            active={"1": True, "0": False}.get(active),
            display_name=None,
            password=password or None,
        )
        _update_user_audited(services, admin, username, change, _client(request))
    except AccountError as exc:
        return _users_page(request, services, str(exc), "error")
    message = f"ユーザー「{username}」を更新しました。"
    return RedirectResponse("/users?" + flash_query(request, message), 303)


# --- audit log (admins) -------------------------------------------------------------------


# Labels of the non-FAQ fields audit rows record (users, imports, publishing).
AUDIT_FIELD_LABELS = {
    "username": "ユーザー名",
    "display_name": "表示名",
    "role": "権限",
    "active": "有効",
    "last_login_at": "最終ログイン",
    "entries": "項目数",
    "changes": "変更",
}


@router.get("/api/audit", tags=["audit"])
def api_audit(
    _admin: Annotated[User, Depends(require_role("admin"))],
    services: Annotated[Services, Depends(get_services)],
    username: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict:
    """The audit log, newest first (admins only)."""
    rows, total = audit.query(
        services.db, username=username, action=action, limit=limit, offset=offset
    )
    return {"total": total, "entries": rows}


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(
    request: Request,
    _admin: Annotated[User, Depends(require_role("admin"))],
    services: Annotated[Services, Depends(get_services)],
    username: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    per_page = 50
    rows, total = audit.query(
        services.db,
        username=username or None,
        action=action or None,
        limit=per_page,
        offset=(page - 1) * per_page,
    )
    from dashboards.faq_versions import FIELD_LABELS

    labels = {**FIELD_LABELS, **AUDIT_FIELD_LABELS}
    for row in rows:
        row["fields"] = audit.changed_fields(row["before"], row["after"], labels)
    return render(
        request,
        "audit.html",
        {
            "entries": rows,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // per_page)),
            "username": username or "",
            "action": action or "",
            "actions": audit.ACTION_LABELS,
        },
    )
