"""The FAQ editor's REST API through the real app (TestClient, real SQLite): list and
search, create, edit with lost-update protection, validation in Japanese, delete,
publish and export. The browser tests cover the pages; this covers what scripts use.
"""

from __future__ import annotations

import csv
import io

import pytest
from browser import USERS, make_services
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from dashboards.accounts import authenticate, create_session
from dashboards.app import create_app
from dashboards.security import SESSION_COOKIE

NEW_ENTRY = {
    "id": "general.parking",
    "category": "一般",
    "title": "駐車場",
    "action": "answer",
    "questions": [
        "市役所に駐車場はありますか",
        "車で行っても大丈夫ですか",
        "駐車料金はかかりますか",
    ],
    "keywords": ["駐車場"],
    "answer": "市役所には来庁者用の駐車場があり、2時間まで無料です。",
}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    services = make_services(tmp_path_factory.mktemp("faq-api"))
    user = authenticate(services.db, *USERS["operator"])
    token, info = create_session(services.db, user, hours=1)
    with TestClient(create_app(services)) as client:
        client.cookies.set(SESSION_COOKIE, token)
        client.headers.update({"X-CSRF-Token": info.csrf_token, "accept": "application/json"})
        yield client


def test_create_search_edit_delete(api):
    created = api.post("/api/faq/entries", json=NEW_ENTRY)
    assert created.status_code == 201, created.text
    first_hash = created.json()["entry"]["hash"]
    found = api.get("/api/faq/entries", params={"q": "駐車 無料"}).json()
    assert [e["id"] for e in found] == ["general.parking"]
    assert api.get("/api/faq/entries", params={"q": "駐車", "version": "published"}).json() == []

    duplicate = api.post("/api/faq/entries", json=NEW_ENTRY)
    assert duplicate.status_code == 422
    assert [p["field"] for p in duplicate.json()["detail"]] == ["id"]  # already taken

    edited = {**NEW_ENTRY, "answer": "来庁者用の駐車場は、1時間まで無料です。"}
    saved = api.put(
        "/api/faq/entries/general.parking", json={**edited, "expected_hash": first_hash}
    )
    assert saved.status_code == 200, saved.text
    # a second editor still holding the old hash does not overwrite the first one's work
    stale = api.put(
        "/api/faq/entries/general.parking",
        json={**NEW_ENTRY, "answer": "古い内容です。", "expected_hash": first_hash},
    )
    assert stale.status_code == 409
    entry = api.get("/api/faq/entries/general.parking").json()
    assert entry["answer"] == edited["answer"]

    for field, value in (("questions", []), ("answer", "{no_such_fact}です。")):
        bad = api.put("/api/faq/entries/general.parking", json={**edited, field: value})
        assert bad.status_code == 422
        problems = {p["field"]: p["message"] for p in bad.json()["detail"]}
        assert field in problems
        assert any("\u3040" <= ch <= "\u30ff" for ch in problems[field])  # said in Japanese

    draft = api.get("/api/faq/draft").json()
    assert [(c["id"], c["change"]) for c in draft["changes"]] == [("general.parking", "added")]
    assert api.delete("/api/faq/entries/general.parking").status_code == 204
    assert api.get("/api/faq/entries/general.parking").status_code == 404
    assert api.get("/api/faq/draft").json()["changes"] == []


def test_publish_then_export_both_formats(api):
    assert api.post("/api/faq/entries", json=NEW_ENTRY).status_code == 201
    published = api.post("/api/faq/publish", json={"comment": "駐車場を追加"})
    assert published.status_code == 200, published.text
    number = published.json()["version"]["number"]
    versions = api.get("/api/faq/versions").json()
    assert versions[0]["number"] == number and versions[0]["comment"] == "駐車場を追加"
    diff = api.get("/api/faq/diff", params={"from": number - 1, "to": number}).json()
    assert [(c["id"], c["change"]) for c in diff["changes"]] == [("general.parking", "added")]

    text = api.get("/api/faq/export", params={"format": "csv", "version": "published"})
    assert text.status_code == 200 and "attachment" in text.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(text.content.decode("utf-8-sig"))))
    by_id = {r[next(iter(r))]: r for r in rows}  # first column is the ID
    assert "general.parking" in by_id and NEW_ENTRY["answer"] in by_id["general.parking"].values()

    book = api.get("/api/faq/export", params={"format": "xlsx"})
    sheet = load_workbook(io.BytesIO(book.content)).active
    ids = [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert "general.parking" in ids and len(ids) == len(rows)


@pytest.mark.parametrize(
    "answer",
    [
        "受付時間は{office_hours:>20000000}です。",
        "受付時間は{office_hours!r}です。",
        "受付時間は{office_hours.__class__}です。",
        "受付時間は{office_hours[0]}です。",
    ],
)
def test_placeholder_with_format_spec_is_refused(api, answer):
    """Only bare {name} placeholders: a width spec would make every fill allocate gigabytes."""
    entry = {**NEW_ENTRY, "id": "general.hours-spec", "answer": answer}
    refused = api.post("/api/faq/entries", json=entry)
    assert refused.status_code == 422, refused.text
    problems = {p["field"]: p["message"] for p in refused.json()["detail"]}
    assert "名前だけ" in problems["answer"]
    assert api.get("/api/faq/entries/general.hours-spec").status_code == 404


def test_bare_placeholder_is_filled(api):
    entry = {**NEW_ENTRY, "id": "general.hours-bare", "answer": "受付時間は{office_hours}です。"}
    created = api.post("/api/faq/entries", json=entry)
    assert created.status_code == 201, created.text
    assert api.delete("/api/faq/entries/general.hours-bare").status_code == 204
