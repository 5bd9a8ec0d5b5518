"""Spreadsheet import/export: round trip, row-numbered errors, all-or-nothing."""

from __future__ import annotations

import csv
import io

import pytest
from openpyxl import Workbook, load_workbook

from dashboards import faq_io
from dashboards.db import Database
from dashboards.faq_io import FaqImportError, export_csv, export_xlsx, import_file
from dashboards.faq_versions import FaqVersions


@pytest.fixture
def versions(tmp_path) -> FaqVersions:
    db = Database(f"sqlite:///{tmp_path / 'faq.db'}")
    db.create_all()
    store = FaqVersions(db, data_dir=tmp_path / "data")
    store.ensure_initial_version()
    return store


def content(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k not in ("revision", "updated")}


def rows_of_xlsx(data: bytes) -> list[list]:
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    return [list(r) for r in sheet.iter_rows(values_only=True)]


def xlsx_of(rows: list[list]) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_export_then_import_round_trips(versions):
    entries = versions.draft().entries
    for name, data in (("faq.xlsx", export_xlsx(entries)), ("faq.csv", export_csv(entries))):
        back = import_file(name, data, versions.city, versions.synonyms_path)
        assert [content(e) for e in back] == [content(e) for e in entries], name
        draft = versions.replace_draft(back, "op", name)
        assert draft.entries == entries and draft.changes == []  # revisions kept too
    header = rows_of_xlsx(export_xlsx(entries))[0]
    assert header[:3] == ["ID (id)", "カテゴリ (category)", "タイトル (title)"]
    assert export_csv(entries).startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8


def test_japanese_or_machine_headers_pipes_and_shift_jis():
    rows = [
        ["id", "カテゴリ", "タイトル", "対応", "質問例", "キーワード", "回答"],
        [
            "test.one",
            "テスト",
            "試しの項目",
            "回答する",
            "質問その一｜質問その二",
            "",
            "お答えします。",
        ],
        [
            "test.two",
            "テスト",
            "二つ目",
            "職員につなぐ",
            "担当の方と話したい\n担当者",
            "担当",
            "おつなぎします。",
        ],
    ]
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    from faq.city import load_city

    entries = import_file("x.csv", out.getvalue().encode("cp932"), load_city())
    assert entries[0]["questions"] == ["質問その一", "質問その二"]
    assert entries[0]["action"] == "answer" and entries[1]["action"] == "transfer"
    assert entries[1]["questions"] == ["担当の方と話したい", "担当者"]


def bad_file_rows(entries: list[dict]) -> list[list]:
    header = [faq_io.header_text(n, label) for n, label in faq_io.COLUMNS]
    rows = [header] + [faq_io._row_values(e) for e in entries]
    rows[3][6] = "{unknown_fact}までお問い合わせください。"  # row 4: answer placeholder
    rows[5][3] = "転送しない"  # row 6: action
    rows[7][0] = rows[2][0]  # row 8: duplicate id of row 3
    rows[9][4] = ""  # row 10: no example questions
    return rows


@pytest.mark.parametrize("kind", ["xlsx", "csv"])
def test_bad_rows_import_nothing_and_are_all_listed(versions, kind):
    before = versions.draft()
    rows = bad_file_rows(before.entries)
    if kind == "xlsx":
        data = xlsx_of(rows)
    else:
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        data = out.getvalue().encode("utf-8")
    with pytest.raises(FaqImportError) as exc:
        import_file(f"faq.{kind}", data, versions.city, versions.synonyms_path)
    found = {(e.row, e.field) for e in exc.value.errors}
    assert found == {(4, "answer"), (6, "action"), (8, "id"), (10, "questions")}
    messages = {e.row: e.message for e in exc.value.errors}
    assert "不明な差し込み項目" in messages[4] and "unknown_fact" in messages[4]
    assert "3行目" in messages[8] and "8行目" in messages[8]
    # nothing changed
    after = versions.draft()
    assert after.revision == before.revision and after.entries == before.entries


def test_header_and_file_problems():
    from faq.city import load_city

    city = load_city()
    with pytest.raises(FaqImportError, match="必要な列がありません"):
        import_file("x.csv", "id,タイトル\na.b,題\n".encode(), city)
    with pytest.raises(FaqImportError, match="不明な列名"):
        import_file("x.csv", "id,カテゴリ,タイトル,対応,質問例,回答,備考\n".encode(), city)
    with pytest.raises(FaqImportError, match="Excelファイル"):
        import_file("x.xlsx", b"this is not a zip", city)
    with pytest.raises(FaqImportError, match="CSV"):
        import_file("x.pdf", b"%PDF", city)
    with pytest.raises(FaqImportError, match="空"):
        import_file("x.csv", b"", city)


def test_good_import_becomes_the_draft_and_is_audited(versions):
    from dashboards import audit

    entries = versions.draft().entries
    rows = [[faq_io.header_text(n, label) for n, label in faq_io.COLUMNS]]
    rows += [faq_io._row_values(e) for e in entries[:-1]]  # drop the last entry
    rows[1][6] = "新しい回答です。"
    data = xlsx_of(rows)
    imported = import_file("faq.xlsx", data, versions.city, versions.synonyms_path)
    # A hand-made sheet has no base revision: replacing the draft is the operator's choice.
    draft = versions.replace_draft(imported, "op", "faq.xlsx", overwrite=True)
    kinds = sorted((c["change"], c["id"]) for c in draft.changes)
    assert kinds == [("changed", entries[0]["id"]), ("removed", entries[-1]["id"])]
    row = audit.query(versions.db, action="faq_import")[0][0]
    assert row["target"] == "faq.xlsx" and row["username"] == "op"
