"""Accounts, sessions, login locking, CSRF and the audit of logins (real SQLite, real app)."""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest
from browser import USERS, make_services
from fastapi.testclient import TestClient

from dashboards import audit
from dashboards.accounts import (
    MAX_FAILED_LOGINS,
    AccountError,
    LoginError,
    authenticate,
    create_session,
    create_user,
    ensure_initial_admin,
    get_user,
    hash_password,
    lookup_session,
    update_user,
    utcnow,
    verify_password,
)
from dashboards.app import create_app
from dashboards.security import SESSION_COOKIE, safe_next


@pytest.fixture
def services(tmp_path):
    return make_services(tmp_path)


@pytest.fixture
def client(services):
    with TestClient(create_app(services), base_url="http://testserver") as c:
        yield c


def form_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client: TestClient, role: str, password: str | None = None):
    username, right = USERS[role]
    page = client.get("/login", headers={"accept": "text/html"})
    return client.post(
        "/login",
        data={
            "username": username,
            "password": password or right,
            "csrf_token": form_token(page.text),
            "next": "/faq",
        },
        follow_redirects=False,
    )


def test_password_hash_is_argon2id_and_verifies():
    h = hash_password("correct horse battery")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse battery")
    assert not verify_password(h, "correct horse batterY")
    assert not verify_password("not-a-hash", "x")  # malformed hash: False, not an exception


def test_create_user_rejects_bad_input(services):
    with pytest.raises(AccountError, match="8文字以上"):
        create_user(services.db, "short", "viewer", "1234567")
    with pytest.raises(AccountError, match="権限"):
        create_user(services.db, "someone", "boss", "long-enough-pass")
    with pytest.raises(AccountError, match="すでに登録"):
        create_user(services.db, "test-admin", "admin", "long-enough-pass")


def test_initial_admin_is_created_once_with_generated_password(tmp_path):
    from dashboards.config import OperationsSettings
    from dashboards.db import Database

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.create_all()
    password = ensure_initial_admin(db, None)
    assert password and len(password) >= 12
    assert authenticate(db, "admin", password).role == "admin"
    assert ensure_initial_admin(db, None) is None  # not again
    assert OperationsSettings(data_dir=tmp_path).web.initial_admin_password is None


def test_session_expires(services):
    user = authenticate(services.db, *USERS["viewer"])
    now = utcnow()
    token, _info = create_session(services.db, user, hours=1.0, now=now)
    assert lookup_session(services.db, token, now=now + dt.timedelta(minutes=59)).user.id == user.id
    assert lookup_session(services.db, token, now=now + dt.timedelta(minutes=61)) is None
    # the expired row is gone: even the original time no longer finds it
    assert lookup_session(services.db, token, now=now) is None
    assert lookup_session(services.db, "forged-token") is None


def test_login_locks_after_repeated_failures(services):
    username, password = USERS["operator"]
    now = utcnow()
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(LoginError) as exc:
            authenticate(services.db, username, "wrong-password", now=now)
        assert not exc.value.locked or _ == MAX_FAILED_LOGINS - 1
    with pytest.raises(LoginError) as exc:
        authenticate(services.db, username, password, now=now)  # right password, still locked
    assert exc.value.locked
    assert authenticate(services.db, username, password, now=now + dt.timedelta(minutes=16))


def test_a_lock_logs_the_typed_name_on_one_bounded_line(services, caplog):
    """The name comes from whoever is at the login form: it must not forge log lines,
    colour a terminal, turn text around or flood the log."""
    typed = "admin\nlogin: admin logged in\x1b[31m" + "\u202e" * 10_000 + "x" * 10_000
    with caplog.at_level(logging.WARNING, logger="dashboards.accounts"):
        for _ in range(MAX_FAILED_LOGINS):
            with pytest.raises(LoginError):
                authenticate(services.db, typed, "wrong-password")
    [record] = [r for r in caplog.records if r.name == "dashboards.accounts"]
    line = record.getMessage()
    assert line.isprintable() and len(line) <= 120, line
    assert line.startswith('login: "admin\\nlogin: admin logged in\\x1b[31m'), line
    # handlers that keep the arguments (JSON logs, error trackers) get the safe form too
    assert all(str(arg).isprintable() and len(str(arg)) <= 80 for arg in record.args)


def test_deactivating_a_user_ends_their_sessions(services):
    user = authenticate(services.db, *USERS["staff"])
    token, _ = create_session(services.db, user, hours=8)
    update_user(services.db, user.username, active=False)
    assert lookup_session(services.db, token) is None
    with pytest.raises(LoginError):
        authenticate(services.db, *USERS["staff"])


def test_login_logout_through_the_app_and_audit(client, services):
    response = login(client, "operator")
    assert response.status_code == 303 and response.headers["location"] == "/faq"
    cookie = response.cookies.get(SESSION_COOKIE) or client.cookies.get(SESSION_COOKIE)
    assert cookie
    set_cookie = response.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie.replace("Lax", "lax")
    page = client.get("/faq", headers={"accept": "text/html"})
    assert page.status_code == 200 and "FAQ編集" in page.text
    assert get_user(services.db, USERS["operator"][0]).last_login_at is not None

    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/api/faq/draft").status_code == 401

    bad = login(client, "viewer", password="nope-nope")
    assert bad.status_code == 401 and "正しくありません" in bad.text

    rows, _ = audit.query(services.db, limit=10)
    actions = [(r["username"], r["action"]) for r in rows]
    assert ("test-operator", "login") in actions
    assert ("test-viewer", "login_failed") in actions
    assert ("test-operator", "logout") in actions


def test_cookies_are_secure_over_https_and_when_configured(services):
    """Over HTTPS (or with ``secure_cookies``) neither cookie may travel over plain HTTP."""
    app = create_app(services)
    with TestClient(app, base_url="https://testserver") as https:
        assert "; secure" in https.get("/login").headers["set-cookie"].lower()
        response = login(https, "operator")
        assert response.status_code == 303
        assert "; secure" in response.headers["set-cookie"].lower()
    with TestClient(app, base_url="http://testserver") as plain:
        assert "; secure" not in login(plain, "operator").headers["set-cookie"].lower()
        services.settings.web.secure_cookies = True  # e.g. behind a TLS proxy
        plain.cookies.clear()
        assert "; secure" in plain.get("/login").headers["set-cookie"].lower()


def test_login_form_needs_its_csrf_token(client):
    response = client.post(
        "/login",
        data={"username": USERS["admin"][0], "password": USERS["admin"][1], "csrf_token": "x"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_unsafe_requests_without_csrf_token_are_rejected(client):
    assert login(client, "admin").status_code == 303
    body = {"username": "new-user", "role": "viewer", "password": "long-enough-1"}
    refused = client.post("/api/users", json=body)
    assert refused.status_code == 403 and "再読み込み" in refused.json()["detail"]
    refused = client.post("/api/users", json=body, headers={"X-CSRF-Token": "guess"})
    assert refused.status_code == 403
    page = client.get("/", headers={"accept": "text/html"})
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    foreign = client.post(
        "/api/users", json=body, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403
    ok = client.post("/api/users", json=body, headers={"X-CSRF-Token": token})
    assert ok.status_code == 201, ok.text
    # the same token in a form field works for HTML forms
    form = client.post(
        "/users",
        data={"csrf_token": token, "username": "form-user", "role": "staff", "password": "x" * 9},
        follow_redirects=False,
    )
    assert form.status_code == 303
    rows, _ = audit.query(services_db(client), action="user_create")
    assert {r["target"] for r in rows} == {"new-user", "form-user"}


def services_db(client: TestClient):
    return client.app.state.services.db


def test_anonymous_page_redirects_to_login_with_next(client):
    response = client.get("/faq?q=納付", headers={"accept": "text/html"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=%2Ffaq%3Fq%3D")
    assert client.get("/api/faq/entries").status_code == 401


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/faq", "/faq"),
        ("//evil.example/x", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
    ],
)
def test_next_url_stays_local(given, expected):
    assert safe_next(given) == expected


def test_failed_login_with_no_such_account_keeps_the_typed_name_out_of_the_audit_log(
    client, services
):
    """Users type their password into the user name field by mistake."""
    page = client.get("/login", headers={"accept": "text/html"})
    typed = "Viewer-pass-1234-typed-in-the-wrong-box"
    form = {"username": typed, "password": "x", "csrf_token": form_token(page.text)}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 401
    assert login(client, "viewer", password="nope-nope").status_code == 401
    rows, _ = audit.query(services.db, action="login_failed", limit=10)
    assert [r["username"] for r in rows] == ["test-viewer", "不明なユーザー"]
    assert typed not in repr(rows)


def test_generated_first_admin_password_goes_to_a_private_file_not_the_log(tmp_path, caplog):
    import stat

    from dashboards.app import prepare_database
    from dashboards.config import OperationsSettings
    from dashboards.db import Database
    from dashboards.services import Services

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = Database(f"sqlite:///{data_dir / 'web.db'}")
    fresh = Services(settings=OperationsSettings(data_dir=data_dir), db=db)
    with caplog.at_level(logging.INFO):
        prepare_database(fresh)
    path = data_dir / "initial-admin-password.txt"
    password = path.read_text(encoding="utf-8").strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert authenticate(db, "admin", password).username == "admin"
    assert password not in caplog.text and str(path) in caplog.text


PHISHING = "パスワードの有効期限が切れました。こちらで再設定してください"


@pytest.mark.parametrize(
    ("page", "role", "query"),
    [
        ("/users", "admin", {"error": PHISHING}),
        ("/users", "admin", {"flash": PHISHING}),
        ("/faq", "operator", {"flash": PHISHING, "kind": "error"}),
        ("/faq/versions", "operator", {"flash": PHISHING, "sig": "0" * 32}),
    ],
)
def test_pages_show_only_notices_the_app_wrote(client, page, role, query):
    """A link with any text in ?flash= or ?error= must not print it as an official notice."""
    assert login(client, role).status_code == 303
    shown = client.get(page, params=query, headers={"accept": "text/html"})
    assert shown.status_code == 200
    assert "パスワードの有効期限" not in shown.text


def test_notices_after_a_form_are_still_shown(client):
    assert login(client, "admin").status_code == 303
    page = client.get("/users", headers={"accept": "text/html"})
    form = {
        "username": "new-viewer",
        "role": "viewer",
        "password": "new-viewer-pass-1234",
        "csrf_token": form_token(page.text),
    }
    done = client.post("/users", data=form)
    assert done.status_code == 200 and "ユーザー「new-viewer」を追加しました。" in done.text
