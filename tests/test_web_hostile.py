"""The web app against a hostile client on loopback: login bursts, oversized and anonymous
bodies, spreadsheet formulas and zip bombs, and imports that would undo newer edits.

Login counting and the import conflict run on SQLite and PostgreSQL (``dbfixtures``);
the body tests talk raw HTTP/1.1 to the real app under uvicorn, so that what the server
reads (or does not) is what a socket shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
import random
import re
import socket
import threading
import tracemalloc
import zipfile
from concurrent.futures import ThreadPoolExecutor
from select import select as readable

import dbfixtures
import httpx
import pytest
from browser import USERS, make_services, running_app
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import delete, select

from dashboards import accounts, audit, faq_io
from dashboards.accounts import (
    MAX_FAILED_LOGINS,
    LoginError,
    LoginFailures,
    authenticate,
    create_session,
    create_user,
)
from dashboards.app import create_app
from dashboards.config import WebSettings
from dashboards.db import Database
from dashboards.faq_io import FaqImportError, export_csv, export_xlsx, import_file
from dashboards.faq_versions import FaqDraftChange, FaqImportConflict, FaqVersions
from dashboards.login_throttle import LoginGate, LoginRefused, source_key
from dashboards.request_limits import DEFAULT_BODY_LIMIT, ROUTE_BODY_LIMITS
from dashboards.security import LOGIN_CSRF_COOKIE, SESSION_COOKIE

db = dbfixtures.db
database_url = dbfixtures.database_url
postgres_url = dbfixtures.postgres_url

PASSWORD = "right-password-123"


# --- login bursts ----------------------------------------------------------------------------


def _burst(db, username: str, passwords: list[str]) -> list[object]:
    """Every password tried at once (threads released together); each result or exception."""
    start = threading.Barrier(len(passwords))

    def attempt(password: str) -> object:
        start.wait()
        try:
            return authenticate(db, username, password)
        except Exception as exc:  # the assertions below say which ones are allowed
            return exc

    with ThreadPoolExecutor(len(passwords)) as pool:
        return list(pool.map(attempt, passwords))


def test_concurrent_wrong_passwords_lock_the_account_and_are_not_all_hashed(db, monkeypatch):
    create_user(db, "clerk", "operator", PASSWORD)
    checked = []
    real_verify = accounts.verify_password
    monkeypatch.setattr(
        accounts, "verify_password", lambda h, p: checked.append(p) or real_verify(h, p)
    )
    results = _burst(db, "clerk", ["wrong-password"] * 40)
    unexpected = [r for r in results if not isinstance(r, LoginError)]
    assert not unexpected, f"server errors instead of refusals: {unexpected[:3]}"
    assert len(checked) == MAX_FAILED_LOGINS  # the rest were refused before any argon2 work
    assert sum(r.locked for r in results) == 40 - MAX_FAILED_LOGINS
    with db.session() as s:
        row = s.scalar(select(LoginFailures).where(LoginFailures.username == "clerk"))
        assert row.count == 40 and row.locked_until is not None
    with pytest.raises(LoginError) as exc:
        authenticate(db, "clerk", PASSWORD)  # the right password, after the burst
    assert exc.value.locked


def test_right_password_inside_a_burst_does_not_unlock_it(db):
    create_user(db, "clerk", "operator", PASSWORD)
    passwords = ["wrong-password"] * 40
    passwords[20] = PASSWORD
    results = _burst(db, "clerk", passwords)
    assert all(isinstance(r, (LoginError, accounts.User)) for r in results), results
    logged_in = [r for r in results if isinstance(r, accounts.User)]
    refused = [r for r in results if isinstance(r, LoginError)]
    # Only an attempt within the first MAX_FAILED_LOGINS may have been checked at all.
    assert len(refused) - sum(r.locked for r in refused) + len(logged_in) <= MAX_FAILED_LOGINS
    with pytest.raises(LoginError) as exc:
        authenticate(db, "clerk", PASSWORD)
    assert exc.value.locked  # the burst leaves the account locked either way


def _login_form(client: httpx.Client, base: str) -> str:
    page = client.get(base + "/login")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def test_login_burst_over_http_gives_no_server_errors(tmp_path):
    with running_app(tmp_path) as app, httpx.Client(timeout=60) as client:
        username, password = USERS["operator"]
        token = _login_form(client, app.url)
        cookie = {"Cookie": f"{LOGIN_CSRF_COOKIE}={token}"}  # each answer sets a new one

        def post(pw: str) -> httpx.Response:
            form = {"username": username, "password": pw, "csrf_token": token, "next": "/"}
            return httpx.post(app.url + "/login", data=form, headers=cookie, timeout=60)

        with ThreadPoolExecutor(40) as pool:
            statuses = [r.status_code for r in pool.map(post, ["wrong-password"] * 40)]
        assert all(s in (401, 429) for s in statuses), statuses
        right = post(password)
        assert right.status_code == 429
        assert SESSION_COOKIE not in right.headers.get("set-cookie", "")


def test_login_replaces_a_session_cookie_the_browser_already_had(tmp_path):
    services = make_services(tmp_path)
    planted, _ = create_session(services.db, authenticate(services.db, *USERS["viewer"]), 1)
    with TestClient(create_app(services)) as client:
        token = _login_form(client, "")
        client.cookies.set(SESSION_COOKIE, planted)  # a session id the browser already had
        username, password = USERS["operator"]
        response = client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": token},
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert accounts.lookup_session(services.db, planted) is None
        assert response.cookies.get(SESSION_COOKIE) not in (None, planted)


# --- bodies: limited by route, and not read before the login check ----------------------------


def _raw(url: str, head: str, body: bytes = b"", wait: float = 10.0) -> tuple[int, bytes]:
    """Send ``head`` and part of a body; the status line and body the server answers with."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head_end = data.find(b"\r\n\r\n")
        status = int(data.split(b" ", 2)[1]) if data else 0
        length = re.search(rb"(?i)content-length: (\d+)", data[:head_end])
        rest = data[head_end + 4 :]
        while length and len(rest) < int(length.group(1)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, rest


def _head(method: str, path: str, headers: dict[str, str]) -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return "\r\n".join(lines) + "\r\n"


def _session(app, role: str) -> dict[str, str]:
    user = authenticate(app.services.db, *USERS[role])
    token, info = create_session(app.services.db, user, hours=1)
    return {"Cookie": f"{SESSION_COOKIE}={token}", "X-CSRF-Token": info.csrf_token}


HUGE = str(600 * 1024 * 1024)


def test_anonymous_and_wrong_role_bodies_are_refused_before_reading(tmp_path):
    """A declared 600 MiB body: the answer comes while almost none of it has been sent."""
    with running_app(tmp_path) as app:
        json_head = {"Content-Type": "application/json", "Content-Length": HUGE}
        status, body = _raw(app.url, _head("POST", "/api/faq/entries", json_head), b"{" * 1024)
        assert status == 401 and "ログイン" in body.decode()
        multipart = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": HUGE}
        status, _ = _raw(app.url, _head("POST", "/api/faq/import", multipart), b"--x\r\n")
        assert status == 401
        page = {**multipart, "Accept": "text/html"}
        status, _ = _raw(app.url, _head("POST", "/faq/import", page), b"--x\r\n")
        assert status == 303  # a browser is sent to the login page
        viewer = {**multipart, **_session(app, "viewer")}
        status, body = _raw(app.url, _head("POST", "/api/faq/import", viewer), b"--x\r\n")
        assert status == 403 and "権限" in body.decode()


def test_oversized_bodies_get_413_by_route(tmp_path):
    with running_app(tmp_path) as app:
        operator = _session(app, "operator")
        declared = {"Content-Type": "application/json", "Content-Length": str(10 << 20)}
        status, body = _raw(app.url, _head("POST", "/api/faq/entries", {**operator, **declared}))
        assert status == 413 and "大きすぎます" in body.decode() and "too large" in body.decode()
        # the login form is public: its limit is small, and it holds for anyone
        login = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": HUGE}
        status, _ = _raw(app.url, _head("POST", "/login", login), b"a" * 100)
        assert status == 413
        # an import file may be larger than a JSON edit, but not without bound
        limit = ROUTE_BODY_LIMITS["/api/faq/import"]
        multipart = {
            "Content-Type": "multipart/form-data; boundary=x",
            "Content-Length": str(limit + 1),
        }
        status, _ = _raw(app.url, _head("POST", "/api/faq/import", {**operator, **multipart}))
        assert status == 413


def _stream_until_answer(
    url: str, head: str, limit: int, preamble: bytes = b""
) -> tuple[bytes, int]:
    """Send a chunked body in 64 kB chunks until the server answers; (answer, bytes sent)."""
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n")
        if preamble:
            sock.sendall(b"%x\r\n%s\r\n" % (len(preamble), preamble))
        chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
        answer = b""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 64 * limit and not readable([sock], [], [], 0)[0]:
                sock.sendall(chunk)
                sent += 65536
        answer = sock.recv(65536)
    return answer, sent


@pytest.mark.parametrize(
    ("path", "content_type", "csrf_in_header"),
    [
        ("/api/faq/entries", "application/json", True),
        ("/faq/import", "multipart/form-data; boundary=x", False),  # CSRF token in the form
    ],
)
def test_chunked_body_without_length_is_cut_off_at_the_limit(
    tmp_path, path, content_type, csrf_in_header
):
    with running_app(tmp_path) as app:
        session = _session(app, "operator")
        if not csrf_in_header:
            del session["X-CSRF-Token"]
        headers = {**session, "Content-Type": content_type, "Transfer-Encoding": "chunked"}
        limit = ROUTE_BODY_LIMITS.get(path, DEFAULT_BODY_LIMIT)
        preamble = b""
        if content_type.startswith("multipart/"):  # a file part that never ends
            preamble = (
                b'--x\r\nContent-Disposition: form-data; name="file"; filename="faq.csv"\r\n'
                b"Content-Type: text/csv\r\n\r\n"
            )
        head = _head("POST", path, headers)
        answer, sent = _stream_until_answer(app.url, head, limit, preamble)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        assert sent < 64 * limit


def test_a_body_that_trickles_in_is_ended(tmp_path, monkeypatch):
    from dashboards import request_limits

    monkeypatch.setattr(request_limits, "BODY_SECONDS", 1.0)
    with running_app(tmp_path) as app:
        headers = {**_session(app, "operator"), "Content-Type": "application/json"}
        headers["Content-Length"] = "1000"
        status, body = _raw(app.url, _head("POST", "/api/faq/entries", headers), b"{")
        assert status == 408 and "時間" in body.decode()


# --- spreadsheets: formulas, round trip, bombs --------------------------------------------------


@pytest.fixture
def versions(tmp_path) -> FaqVersions:
    store = FaqVersions(Database(f"sqlite:///{tmp_path / 'faq.db'}"), tmp_path / "d")
    store.db.create_all()
    store.ensure_initial_version()
    return store


FORMULA_TITLES = [
    '=HYPERLINK("http://evil.example","詳しくはこちら")',
    "+1+2",
    "-3",
    "@SUM(A1)",
    "＝全角の等号",
    "＋全角",
    "－全角",
    "＠全角",
    "'=すでにアポストロフィ付き",
    "''+二重",
    "'アポストロフィだけ",
]


def _with_titles(entries: list[dict], titles: list[str]) -> list[dict]:
    out = [dict(e) for e in entries]
    for entry, title in zip(out, titles, strict=False):
        entry["title"] = title
    return out


def test_export_escapes_formulas_and_round_trips_exactly(versions):
    entries = _with_titles(versions.draft().entries, FORMULA_TITLES)
    assert len(entries) >= len(FORMULA_TITLES)
    csv_rows = list(csv.reader(io.StringIO(export_csv(entries).decode("utf-8-sig"))))
    sheet = load_workbook(io.BytesIO(export_xlsx(entries))).worksheets[0]
    for i in range(1, len(FORMULA_TITLES) + 1):
        for cell_text in (csv_rows[i][2], sheet.cell(row=i + 1, column=3).value):
            assert not cell_text.startswith(faq_io.FORMULA_LEADS), cell_text
        assert sheet.cell(row=i + 1, column=3).data_type == "s"
    assert all(c.data_type == "s" for row in sheet.iter_rows(min_row=2) for c in row if c.value)
    for name, data in (("f.csv", export_csv(entries)), ("f.xlsx", export_xlsx(entries))):
        back = import_file(name, data, versions.city, versions.synonyms_path)
        assert [e["title"] for e in back] == [e["title"] for e in entries], name


def _xlsx_with_sheet(sheet_xml: bytes) -> bytes:
    """A real workbook whose first sheet's XML is replaced (compressed as usual)."""
    template = export_xlsx([])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(template)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = sheet_xml if item.filename == "xl/worksheets/sheet1.xml" else src.read(item)
            dst.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


SHEET_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?><worksheet '
    b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
)
SHEET_TAIL = b"</sheetData></worksheet>"


@pytest.mark.parametrize(
    "sheet_xml",
    [
        # one row of 400,000 empty cells: ~1 MB zipped to a few kB, gigabytes in openpyxl
        SHEET_HEAD + b'<row r="1">' + b"<c/>" * 400_000 + b"</row>" + SHEET_TAIL,
        # far more than the unpacked-size limit of plain XML
        SHEET_HEAD + b"<!--" + b" " * (faq_io.XLSX_MAX_UNCOMPRESSED + 1) + b"-->" + SHEET_TAIL,
        # two million empty rows
        SHEET_HEAD + b"<row/>" * 2_000_000 + SHEET_TAIL,
        # 300,000 cells of random numbers: zips only ~3x, passes the size and ratio checks
        SHEET_HEAD
        + b'<row r="1">'
        + b"".join(b"<c><v>%d</v></c>" % (i * 7919 % 10**9) for i in range(300_000))
        + b"</row>"
        + SHEET_TAIL,
    ],
    ids=["wide-row", "huge-member", "many-rows", "wide-row-incompressible"],
)
def test_xlsx_bombs_are_refused_before_openpyxl(sheet_xml, versions):
    data = _xlsx_with_sheet(sheet_xml)
    assert len(data) < faq_io.MAX_BYTES
    tracemalloc.start()
    try:
        with pytest.raises(FaqImportError) as exc:
            import_file("bomb.xlsx", data, versions.city, versions.synonyms_path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "大きすぎ" in str(exc.value) or "多すぎ" in str(exc.value)
    assert peak < 40 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


SPREADSHEET_NS = b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
SHARED_STRINGS_TYPE = (
    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
)


def _xlsx_with_part(name: str, xml: bytes, template: bytes | None = None) -> bytes:
    """A real export with one part replaced or added (and declared, so openpyxl reads it)."""
    template = template or export_xlsx([])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(template)) as src, zipfile.ZipFile(out, "w") as dst:
        present = name in src.namelist()
        for item in src.infolist():
            data = xml if item.filename == name else src.read(item)
            if item.filename == "[Content_Types].xml" and not present:
                data = data.replace(b"</Types>", SHARED_STRINGS_TYPE + b"</Types>")
            dst.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED)
        if not present:
            dst.writestr(name, xml, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _styles(formats: int) -> bytes:
    """A styles.xml with ``formats`` cell formats (varied, so that it zips only ~30x)."""
    rng = random.Random(2)
    xfs = b"".join(
        b'<xf numFmtId="%d" fontId="0" fillId="0" borderId="0" xfId="0"/>' % rng.randrange(200)
        for _ in range(formats)
    )
    return (
        b'<?xml version="1.0" encoding="UTF-8"?><styleSheet ' + SPREADSHEET_NS + b">"
        b'<fonts count="1"><font><sz val="11"/></font></fonts>'
        b'<fills count="1"><fill><patternFill/></fill></fills>'
        b'<borders count="1"><border/></borders>'
        b'<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        b'</cellStyleXfs><cellXfs count="%d">' % formats + xfs + b"</cellXfs></styleSheet>"
    )


def _shared_strings(texts: list[bytes]) -> bytes:
    body = b"".join(b"<si><t>%s</t></si>" % t for t in texts)
    head = b'<sst %s count="%d" uniqueCount="%d">' % (SPREADSHEET_NS, len(texts), len(texts))
    return b'<?xml version="1.0" encoding="UTF-8"?>' + head + body + b"</sst>"


def _few_letters(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.choice(b"abcd") for _ in range(n))


@pytest.mark.parametrize(
    ("part", "build"),
    [
        # 100,000 cell formats: 6 MB unzipped, ~200 kB zipped; openpyxl took 8 s and 80 MB
        ("xl/styles.xml", lambda: _styles(100_000)),
        # a styles part over the per-part size (under the workbook's total)
        ("xl/styles.xml", lambda: _styles(280_000)),
        # 500,000 short strings: openpyxl took 20 s and 65 MB
        (
            "xl/sharedStrings.xml",
            lambda: _shared_strings([b"%x" % (i % 251) for i in range(500_000)]),
        ),
        # few strings, but 9 million characters of them
        (
            "xl/sharedStrings.xml",
            lambda: _shared_strings([_few_letters(1_000_000, i) for i in range(9)]),
        ),
    ],
    ids=["many-styles", "huge-styles", "many-strings", "long-strings"],
)
def test_whole_read_xlsx_parts_are_bounded_before_openpyxl(part, build, versions):
    data = _xlsx_with_part(part, build())
    assert len(data) < faq_io.MAX_BYTES
    tracemalloc.start()
    try:
        with pytest.raises(FaqImportError) as exc:
            import_file("bomb.xlsx", data, versions.city, versions.synonyms_path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "大きすぎ" in str(exc.value)
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


def test_ordinary_workbook_parts_pass_the_part_checks(versions):
    """An export with a shared-strings part, as Excel saves one, still imports."""
    entries = versions.draft().entries
    texts = [e["answer"].encode() for e in entries] * 20
    export = export_xlsx(entries, versions.draft().revision)
    data = _xlsx_with_part("xl/sharedStrings.xml", _shared_strings(texts), export)
    back = import_file("ok.xlsx", data, versions.city, versions.synonyms_path)
    assert [e["id"] for e in back] == [e["id"] for e in entries]


@pytest.mark.parametrize(
    "data",
    [b"\n" * (faq_io.MAX_BYTES - 10), b"," * (faq_io.MAX_BYTES - 10) + b"\n"],
    ids=["many-rows", "many-columns"],
)
def test_csv_is_bounded_while_reading(data, versions):
    tracemalloc.start()
    try:
        with pytest.raises(FaqImportError):
            import_file("bomb.csv", data, versions.city, versions.synonyms_path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 60 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


# --- an import made from an old export -------------------------------------------------------


def test_import_from_an_old_export_is_refused_naming_the_newer_edits(database_url, tmp_path):
    store = FaqVersions(Database(database_url), tmp_path / "data")
    store.ensure_initial_version()
    entries = store.draft().entries
    base = store.draft().revision
    # The spreadsheet, exported now, changes entry 1 ...
    in_file = [dict(e) for e in entries]
    in_file[1]["answer"] = "ファイル側で直した回答です。"
    old_export = export_xlsx(in_file, base)
    # ... while someone edits entry 0 and deletes entry 2 in the draft meanwhile.
    edited = dict(entries[0], answer="書き出しの後で直した回答です。")
    store.save_entry(edited, "op", entries[0]["id"])
    store.delete_entry(entries[2]["id"], "op")

    back, found = faq_io.read_import("old.xlsx", old_export, store.city, store.synonyms_path)
    assert found == base
    with pytest.raises(FaqImportConflict) as exc:
        store.replace_draft(back, "op", "old.xlsx", base_revision=found)
    # Entry 1 changed in the file only: not a conflict. Entries 0 and 2 would be undone.
    assert sorted(i for i, _t in exc.value.entries) == sorted([entries[0]["id"], entries[2]["id"]])
    assert entries[0]["title"] in str(exc.value) and "変更されています" in str(exc.value)
    draft = store.draft()
    assert draft.get(entries[0]["id"])["answer"] == edited["answer"]  # kept
    assert draft.get(entries[2]["id"]) is None

    store.replace_draft(back, "op", "old.xlsx", base_revision=found, overwrite=True)
    draft = store.draft()
    assert draft.get(entries[0]["id"])["answer"] == entries[0]["answer"]
    assert draft.get(entries[1]["id"])["answer"] == "ファイル側で直した回答です。"
    # A file exported from the current draft imports without question.
    current = export_csv(draft.entries, draft.revision)
    back, found = faq_io.read_import("now.csv", current, store.city, store.synonyms_path)
    store.replace_draft(back, "op", "now.csv", base_revision=found)

    # A database from before the change history: every entry the file would change counts.
    with store.db.session() as s:
        s.execute(delete(FaqDraftChange))
    older = [dict(e) for e in store.draft().entries]
    older[3]["answer"] = "古いファイルの回答です。"
    with pytest.raises(FaqImportConflict) as exc:
        store.replace_draft(older, "op", "older.csv", base_revision=found - 1)
    assert [i for i, _t in exc.value.entries] == [older[3]["id"]]
    store.db.dispose()


def test_import_conflict_through_the_api_and_the_page(tmp_path):
    services = make_services(tmp_path)
    user = authenticate(services.db, *USERS["operator"])
    token, info = create_session(services.db, user, hours=1)
    with TestClient(create_app(services)) as client:
        client.cookies.set(SESSION_COOKIE, token)
        client.headers.update({"X-CSRF-Token": info.csrf_token})
        export = client.get("/api/faq/export", params={"format": "xlsx"}).content
        first = client.get("/api/faq/entries").json()[0]
        body = {**first, "answer": "あとから直した回答です。", "expected_hash": first["hash"]}
        for key in ("hash", "revision", "updated"):
            body.pop(key, None)
        assert client.put(f"/api/faq/entries/{first['id']}", json=body).status_code == 200

        files = {"file": ("faq.xlsx", export, faq_io.XLSX_MEDIA_TYPE)}
        refused = client.post("/api/faq/import", files=files)
        assert refused.status_code == 409 and first["title"] in refused.json()["detail"]
        page = client.post(
            "/faq/import",
            files=files,
            data={"csrf_token": info.csrf_token},
            headers={"accept": "text/html"},
        )
        assert page.status_code == 409
        assert "書き出し後の変更を上書きする" in page.text and first["id"] in page.text
        fresh = client.get("/api/faq/export", params={"format": "csv"}).content
        again = client.post("/api/faq/import", files={"file": ("faq.csv", fresh, "text/csv")})
        assert again.status_code == 200, again.text
        forced = client.post("/api/faq/import", files=files, data={"overwrite": "true"})
        assert forced.status_code == 200, forced.text
        answer = client.get(f"/api/faq/entries/{first['id']}").json()["answer"]
        assert answer == first["answer"]


def _hand_made_csv(entries: list[dict]) -> bytes:
    """A sheet typed by hand (or an export with its base-revision column deleted)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([faq_io.header_text(n, label) for n, label in faq_io.COLUMNS])
    writer.writerows(faq_io._row_values(e) for e in entries)
    return out.getvalue().encode()


def test_import_without_a_base_revision_counts_as_an_unknown_base(database_url, tmp_path):
    store = FaqVersions(Database(database_url), tmp_path / "data")
    store.ensure_initial_version()
    entries = store.draft().entries
    # A file identical to the draft changes nothing: nothing to lose, imported as is.
    same, found = faq_io.read_import("same.csv", _hand_made_csv(entries), store.city)
    assert found is None
    store.replace_draft(same, "op", "same.csv", base_revision=found)
    # Someone edits entry 0 after the sheet was made; the sheet changes entry 1.
    edited = dict(entries[0], answer="取り込みの前に直した回答です。")
    store.save_entry(edited, "op", entries[0]["id"])
    in_file = [dict(e) for e in entries]
    in_file[1]["answer"] = "ファイル側で直した回答です。"
    back, found = faq_io.read_import("hand.csv", _hand_made_csv(in_file), store.city)
    assert found is None
    with pytest.raises(FaqImportConflict) as exc:
        store.replace_draft(back, "op", "hand.csv", base_revision=found)
    # Without a base, every entry the file would change counts, the edited one included.
    assert sorted(i for i, _t in exc.value.entries) == sorted([entries[0]["id"], entries[1]["id"]])
    assert str(exc.value).startswith("このファイルを書き出した後に、次の項目が下書きで変更")
    assert "書き出し後の変更を上書きする" in str(exc.value)
    assert store.draft().get(entries[0]["id"])["answer"] == edited["answer"]  # kept
    store.replace_draft(back, "op", "hand.csv", base_revision=found, overwrite=True)
    assert store.draft().get(entries[1]["id"])["answer"] == "ファイル側で直した回答です。"
    store.db.dispose()


def test_import_without_a_base_revision_through_the_api_and_the_page(tmp_path):
    services = make_services(tmp_path)
    user = authenticate(services.db, *USERS["operator"])
    token, info = create_session(services.db, user, hours=1)
    with TestClient(create_app(services)) as client:
        client.cookies.set(SESSION_COOKIE, token)
        client.headers.update({"X-CSRF-Token": info.csrf_token})
        entries = FaqVersions.for_services(services).draft().entries
        changed = [dict(e) for e in entries]
        changed[0]["answer"] = "手で作ったファイルの回答です。"
        files = {"file": ("hand.csv", _hand_made_csv(changed), "text/csv")}
        refused = client.post("/api/faq/import", files=files)
        assert refused.status_code == 409, refused.text
        assert "書き出した後に" in refused.json()["detail"]
        page = client.post(
            "/faq/import",
            files=files,
            data={"csrf_token": info.csrf_token},
            headers={"accept": "text/html"},
        )
        assert page.status_code == 409 and 'name="overwrite"' in page.text
        ticked = client.post(
            "/faq/import",
            files=files,
            data={"csrf_token": info.csrf_token, "overwrite": "1"},
            headers={"accept": "text/html"},
            follow_redirects=False,
        )
        assert ticked.status_code == 303
        answer = client.get(f"/api/faq/entries/{entries[0]['id']}").json()["answer"]
        assert answer == "手で作ったファイルの回答です。"


def test_errors_of_a_bad_file_are_listed_up_to_a_bound(versions):
    header = "id,category,title,action,questions,answer\n"
    rows = "".join(f"bad.{i},一般,題{i},どれでもない,質問,回答\n" for i in range(3000))
    with pytest.raises(FaqImportError) as exc:
        import_file("bad.csv", (header + rows).encode(), versions.city, versions.synonyms_path)
    errors = exc.value.errors
    assert len(errors) == faq_io.MAX_REPORTED_ERRORS + 1
    assert errors[0].row == 2 and "ほかにも" in errors[-1].message


# --- unanswered questions: the ids a form names ------------------------------------------------


@pytest.mark.parametrize(
    ("turn_ids", "message"),
    [
        ("9" * 30, "番号が正しくありません"),  # beyond what any integer column holds
        (str(2**63), "番号が正しくありません"),
        ("1," + "9" * 5000, "番号が正しくありません"),  # beyond int()'s digit limit
        ("-5", "番号が正しくありません"),
        ("1_000", "番号が正しくありません"),
        ("１２", "番号が正しくありません"),  # fullwidth digits, which int() accepts
        (",".join(["1"] * 20_000), "件まで"),
        (",".join(str(i) for i in range(1, 12_000)), "件まで"),
        (" , ", "対象の発話がありません"),
    ],
    ids=[
        "huge",
        "2**63",
        "many-digits",
        "negative",
        "underscore",
        "fullwidth",
        "repeated",
        "many",
        "none",
    ],
)
def test_unanswered_actions_refuse_bad_turn_ids_with_422(tmp_path, turn_ids, message):
    services = make_services(tmp_path)
    user = authenticate(services.db, *USERS["operator"])
    token, info = create_session(services.db, user, hours=1)
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        client.cookies.set(SESSION_COOKIE, token)
        draft_before = FaqVersions.for_services(services).draft().revision
        entry = client.get("/api/faq/entries").json()[0]
        forms = {
            "/unanswered/dismiss": {},
            "/unanswered/add-example": {"faq_id": entry["id"], "question": "犬の登録料は"},
        }
        for path, fields in forms.items():
            form = {**fields, "turn_ids": turn_ids, "csrf_token": info.csrf_token}
            response = client.post(path, data=form, follow_redirects=False)
            assert response.status_code == 422, (path, response.status_code)
            assert message in response.text
        ok = client.post(
            "/unanswered/dismiss",
            data={"turn_ids": "1,2,3", "csrf_token": info.csrf_token},
            follow_redirects=False,
        )
        assert ok.status_code == 303
    assert FaqVersions.for_services(services).draft().revision == draft_before  # FAQ unchanged


# --- serving: header size and time, connections, forwarded addresses, login sources ----------


def test_login_failures_from_one_ipv6_64_count_together():
    async def refused(gate: LoginGate, source: str) -> bool:
        try:
            async with gate.check(source):
                return False
        except LoginRefused:
            return True

    async def main() -> None:
        gate = LoginGate(source_failures=3)
        for i in range(3):  # a fresh address from the same /64 each time
            gate.record_failure(f"2001:db8:1:2::{i + 1:x}")
        assert await refused(gate, "2001:db8:1:2:ffff:ffff:ffff:ffff")
        assert not await refused(gate, "2001:db8:1:3::1")  # the next /64 is someone else
        for _ in range(3):
            gate.record_failure("::ffff:192.0.2.7")  # IPv4-mapped: the IPv4 address
        assert await refused(gate, "192.0.2.7")
        assert not await refused(gate, "192.0.2.8")

    asyncio.run(main())
    assert source_key("2001:DB8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert source_key("fe80::1%eth0") == "fe80::/64"
    assert source_key("testclient") == "testclient"


def _failed_login_client(app, headers: dict[str, str]) -> str:
    """Post a wrong password with ``headers``; the client address the audit log recorded."""
    with httpx.Client(timeout=30) as client:
        token = _login_form(client, app.url)
        form = {"username": "nobody", "password": "wrong", "csrf_token": token}
        response = client.post(app.url + "/login", data=form, headers=headers)
        assert response.status_code == 401
    rows, _total = audit.query(app.services.db, action="login_failed", limit=1)
    return rows[0]["client"]


def test_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path):
    forged = {"X-Forwarded-For": "203.0.113.9"}
    with running_app(tmp_path / "direct", web=WebSettings()) as app:
        assert _failed_login_client(app, forged) == "127.0.0.1"
    proxied = WebSettings(trusted_proxies=["127.0.0.1"])
    with running_app(tmp_path / "proxied", web=proxied) as app:
        assert _failed_login_client(app, forged) == "203.0.113.9"
    other = WebSettings(trusted_proxies=["192.0.2.1"])  # a proxy, but not this peer
    with running_app(tmp_path / "other", web=other) as app:
        assert _failed_login_client(app, forged) == "127.0.0.1"


def _answer_or_close(sock: socket.socket) -> bytes:
    """What the server sends before closing (b"" if it just closes or resets)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_request_with_100_kib_of_headers_is_refused_unread(tmp_path):
    with running_app(tmp_path, web=WebSettings()) as app:
        host, port = app.url.removeprefix("http://").split(":")
        head = _head("GET", "/login", {f"X-Padding-{i}": "a" * 1000 for i in range(100)})
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(head.encode() + b"\r\n")
            answer = _answer_or_close(sock)
        assert answer == b"" or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), answer[:80]
        assert b"csrf_token" not in answer  # the login page was not served
        cookies = {f"X-Padding-{i}": "a" * 1000 for i in range(12)}  # 12 kB: an ordinary head
        status, _ = _raw(app.url, _head("GET", "/healthz", cookies))
        assert status == 200


def test_headers_that_trickle_in_are_ended(tmp_path):
    """A client sending its head a byte at a time gets 408 and is closed."""
    with running_app(tmp_path, web=WebSettings(header_timeout_s=1.0)) as app:
        host, port = app.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sent = 0
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                while sent < 300 and not readable([sock], [], [], 0.1)[0]:
                    sock.sendall(b"a")  # 300 bytes over 30 s, were it never ended
                    sent += 1
            answer = _answer_or_close(sock)
        assert sent < 300
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:80]
        # a request sent at once, and a second on the same connection, are answered
        with httpx.Client(timeout=10) as client:
            assert client.get(app.url + "/healthz").status_code == 200
            assert client.get(app.url + "/healthz").status_code == 200


def test_connections_beyond_the_limit_get_503(tmp_path):
    web = WebSettings(max_connections=4, header_timeout_s=60.0)
    with running_app(tmp_path, web=web) as app:
        host, port = app.url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(4)]
        try:
            statuses = []
            for _ in range(50):  # until the server has taken all four idle connections
                status, _ = _raw(app.url, _head("GET", "/healthz", {"Connection": "close"}))
                statuses.append(status)
                if status == 503:
                    break
                threading.Event().wait(0.1)
            assert statuses[-1] == 503, statuses
        finally:
            for sock in idle:
                sock.close()
        for _ in range(50):
            status, _ = _raw(app.url, _head("GET", "/healthz", {"Connection": "close"}))
            if status == 200:
                break
            threading.Event().wait(0.1)
        assert status == 200


# --- live event streams: ended with their login, and few per user --------------------------


@contextlib.contextmanager
def _event_stream(url: str, headers: dict[str, str]):
    """An open SSE response (read timeout 10 s: a stream that should end but does not fails)."""
    with (
        httpx.Client(timeout=httpx.Timeout(10.0, connect=10.0)) as client,
        client.stream("GET", url + "/api/monitor/events", headers=headers) as response,
    ):
        yield response


@pytest.mark.parametrize("how", ["deactivated", "logged_out"])
def test_an_open_stream_ends_with_its_login(tmp_path, monkeypatch, how):
    monkeypatch.setattr("dashboards.routes.monitor.HEARTBEAT_S", 0.2)
    with running_app(tmp_path) as app:
        db = app.services.db
        username, password = USERS["viewer"]
        token, _ = create_session(db, authenticate(db, username, password), hours=1)
        headers = {"Cookie": f"{SESSION_COOKIE}={token}"}
        with _event_stream(app.url, headers) as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            assert b"snapshot" in next(chunks) + next(chunks)
            assert next(chunks).startswith(b": keep-alive")  # still allowed: heartbeats flow
            if how == "deactivated":
                accounts.update_user(db, username, active=False)
            else:
                accounts.end_session(db, token)
            rest = list(itertools.islice(chunks, 50))  # an endless stream: 50 heartbeats
        assert len(rest) <= 1, rest


def test_an_open_stream_ends_when_its_session_expires(tmp_path, monkeypatch):
    monkeypatch.setattr("dashboards.routes.monitor.HEARTBEAT_S", 0.2)
    with running_app(tmp_path) as app:
        db = app.services.db
        user = authenticate(db, *USERS["viewer"])
        token, _ = create_session(db, user, hours=1.5 / 3600)  # 1.5 seconds
        with _event_stream(app.url, {"Cookie": f"{SESSION_COOKIE}={token}"}) as response:
            assert response.status_code == 200
            assert len(list(itertools.islice(response.iter_raw(), 100))) < 100  # it ended
        assert accounts.lookup_session(db, token) is None


def test_streams_are_capped_per_user_and_in_all_and_healthz_stays_up(tmp_path, monkeypatch):
    monkeypatch.setattr("dashboards.routes.monitor.HEARTBEAT_S", 0.2)
    web = WebSettings(max_connections=10)  # streams: at most 5 in all
    services = make_services(tmp_path)
    services.settings.web = web
    with running_app(tmp_path, services, web=web) as app, contextlib.ExitStack() as stack:
        viewer = _session(app, "viewer")
        opened = [stack.enter_context(_event_stream(app.url, viewer)) for _ in range(3)]
        assert [r.status_code for r in opened] == [200, 200, 200]
        with _event_stream(app.url, viewer) as fourth:
            assert fourth.status_code == 429
            assert "ライブ画面" in fourth.read().decode()
        for role in ("operator", "admin"):
            other = stack.enter_context(_event_stream(app.url, _session(app, role)))
            assert other.status_code == 200
        with _event_stream(app.url, _session(app, "staff")) as over_all:
            assert over_all.status_code == 429
        with httpx.Client(timeout=10) as client:
            assert client.get(app.url + "/healthz").status_code == 200
            assert client.get(app.url + "/login").status_code == 200
        opened[0].close()  # a stream given up frees its place
        statuses = []
        for _ in range(50):
            with _event_stream(app.url, viewer) as again:
                statuses.append(again.status_code)
            if statuses[-1] == 200:
                break
            threading.Event().wait(0.1)
        assert statuses[-1] == 200, statuses


# --- test phone: few calls at once ----------------------------------------------------------


class _WaitingSwitchboard:
    """Takes calls and keeps them until cancelled: the web app's limits are under test."""

    accepting = True

    def __init__(self) -> None:
        self.calls = 0

    def new_call_id(self) -> str:
        self.calls += 1
        return f"test-phone-{self.calls}"

    async def handle(self, transport, caller: str, call_id: str) -> None:
        await asyncio.Event().wait()


def _browser_offer() -> str:
    from webrtc_client import BrowserLikePeer

    async def offer() -> str:
        peer = BrowserLikePeer()
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        sdp = peer.pc.localDescription.sdp
        await peer.close()
        return sdp

    return asyncio.run(offer())


def test_test_phone_calls_are_capped_per_user_and_in_all(tmp_path):
    services = make_services(tmp_path, switchboard=_WaitingSwitchboard())
    create_user(services.db, "second-operator", "operator", PASSWORD)
    sdp = _browser_offer()
    with TestClient(create_app(services)) as client:

        def offer(username: str, password: str):
            token, info = create_session(
                services.db, authenticate(services.db, username, password), hours=1
            )
            headers = {"Cookie": f"{SESSION_COOKIE}={token}", "X-CSRF-Token": info.csrf_token}
            client.cookies.clear()
            return client.post("/api/phone/offer", json={"sdp": sdp}, headers=headers)

        first = offer(*USERS["operator"])
        assert first.status_code == 200, first.text
        again = offer(*USERS["operator"])
        assert again.status_code == 429 and "1人1通話" in again.json()["detail"]
        assert offer(*USERS["admin"]).status_code == 200
        third = offer("second-operator", PASSWORD)  # two calls already: the default cap
        assert third.status_code == 429 and "上限" in third.json()["detail"]
        assert len(services.webrtc.calls) == 2
        for call in list(services.webrtc.calls.values()):
            asyncio.run_coroutine_threadsafe(call.transport.hangup(), call.task.get_loop())


# --- staff console: only the one who answered ends a call ------------------------------------


class _ConsoleWithOneCall:
    """A staff console holding one call, answered by ``answered_by``."""

    def __init__(self, answered_by: str) -> None:
        self.call = {"call_id": "c1", "state": "connected", "answered_by": answered_by}
        self.hung_up: list[str] = []

    def calls(self) -> list[dict]:
        return [self.call] if not self.hung_up else []

    async def hangup(self, call_id: str, staff_user: str | None = None, admin: bool = True) -> None:
        self.hung_up.append(call_id)


def test_staff_hang_up_only_their_own_calls(tmp_path):
    services = make_services(tmp_path, staff_console=_ConsoleWithOneCall(USERS["staff"][0]))
    create_user(services.db, "second-staff", "staff", PASSWORD)
    with TestClient(create_app(services)) as client:

        def hang_up(username: str, password: str):
            user = authenticate(services.db, username, password)
            token, info = create_session(services.db, user, hours=1)
            client.cookies.clear()
            headers = {"Cookie": f"{SESSION_COOKIE}={token}", "X-CSRF-Token": info.csrf_token}
            return client.post("/api/staff/calls/c1/hangup", headers=headers)

        refused = hang_up("second-staff", PASSWORD)
        assert refused.status_code == 403 and "応答した担当者" in refused.json()["detail"]
        assert services.staff_console.hung_up == []
        assert hang_up(*USERS["staff"]).status_code == 204
        assert services.staff_console.hung_up == ["c1"]
        assert hang_up(*USERS["staff"]).status_code == 404

    admin_services = make_services(tmp_path / "admin", staff_console=_ConsoleWithOneCall("x"))
    with TestClient(create_app(admin_services)) as client:
        user = authenticate(admin_services.db, *USERS["admin"])
        token, info = create_session(admin_services.db, user, hours=1)
        headers = {"Cookie": f"{SESSION_COOKIE}={token}", "X-CSRF-Token": info.csrf_token}
        assert client.post("/api/staff/calls/c1/hangup", headers=headers).status_code == 204
