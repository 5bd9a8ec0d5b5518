"""FAQ import and export as CSV and Excel (.xlsx), one row per entry.

City staff maintain FAQs in spreadsheets, so the whole FAQ round-trips through one:
export, edit in Excel, import. Headers are Japanese with the stable machine name in
brackets (``タイトル (title)``); either part alone is accepted on import. List cells
(質問例, キーワード, タグ) hold one item per line, or items separated by ``｜``.

Import is all or nothing: every row is checked with faq.store's rules (through
``faq_versions.validate_entry``) and then the whole FAQ is loaded as the bot would load
it; if anything is wrong, nothing is imported and every bad row is reported with its
row number (as Excel numbers it) and the reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dashboards.faq_versions import (
    ACTION_LABELS,
    FIELD_LABELS,
    EntryProblem,
    check_snapshot,
    validate_entry,
)
from faq.city import CityConfig

COLUMNS: list[tuple[str, str]] = [
    ("id", "ID"),
    ("category", "カテゴリ"),
    ("title", "タイトル"),
    ("action", "対応"),
    ("questions", "質問例"),
    ("keywords", "キーワード"),
    ("answer", "回答"),
    ("followup", "補足"),
    ("tags", "タグ"),
]
REQUIRED = ("id", "category", "title", "action", "questions", "answer")
LIST_FIELDS = ("questions", "keywords", "tags")
IGNORED = ("revision", "updated", "改訂番号", "更新日")  # exported by older tools; not imported
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 5000
LIST_SPLIT = re.compile(r"[\r\n｜|]+")
ACTION_WORDS = {
    **{k: k for k in ACTION_LABELS},
    **{v: k for k, v in ACTION_LABELS.items()},
    "回答": "answer",
    "案内": "redirect",
    "転送": "transfer",
    "取次": "transfer",
}
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def header_text(name: str, label: str) -> str:
    return f"{label} ({name})"


@dataclass(frozen=True)
class RowError:
    """One problem in an imported file; ``row`` is the spreadsheet row (header = 1)."""

    row: int | None
    message: str
    entry: str | None = None
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "entry": self.entry,
            "field": self.field,
            "field_label": FIELD_LABELS.get(self.field or "", self.field),
            "message": self.message,
        }

    def __str__(self) -> str:
        where = f"{self.row}行目" if self.row else "ファイル"
        label = FIELD_LABELS.get(self.field or "", self.field or "")
        return f"{where}" + (f"（{label}）" if label else "") + f": {self.message}"


class FaqImportError(ValueError):
    """The file was not imported; ``errors`` lists every problem found."""

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


# --- reading -------------------------------------------------------------------------------


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _column_key(header: str) -> str | None:
    """Machine name for a header cell: 'タイトル (title)', 'title' or 'タイトル'."""
    text = unicodedata.normalize("NFKC", header).strip()
    inner = re.search(r"\(([^)]*)\)\s*$", text)
    if inner:
        candidate = inner.group(1).strip().lower()
        if any(candidate == name for name, _ in COLUMNS):
            return candidate
        text = text[: inner.start()].strip()
    low = text.lower()
    for name, label in COLUMNS:
        if low == name or text == unicodedata.normalize("NFKC", label):
            return name
    return None


def read_csv(data: bytes) -> list[list[str]]:
    """Rows of a CSV file in UTF-8 (with or without BOM) or Shift_JIS (Excel's default)."""
    for encoding in ("utf-8-sig", "cp932"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise FaqImportError(
            [RowError(None, "文字コードを判別できません。UTF-8かShift_JISで保存してください。")]
        )
    try:
        return [list(r) for r in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as exc:
        raise FaqImportError([RowError(None, f"CSVとして読み込めません: {exc}")]) from exc


def read_xlsx(data: bytes) -> list[list[str]]:
    """Rows of the first sheet of an .xlsx workbook (cell values, not formulas)."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # zipfile, XML and openpyxl errors alike
        raise FaqImportError(
            [
                RowError(
                    None, "Excelファイル（.xlsx）として読み込めません。ファイルをご確認ください。"
                )
            ]
        ) from exc
    try:
        sheet = book.worksheets[0]
        rows = []
        for i, row in enumerate(sheet.iter_rows(values_only=True)):
            if i > MAX_ROWS + 1:
                break
            rows.append([_cell_text(v) for v in row])
        return rows
    finally:
        book.close()


def read_table(filename: str, data: bytes) -> list[list[str]]:
    """Rows of an uploaded file, by its extension (.csv or .xlsx)."""
    if len(data) > MAX_BYTES:
        raise FaqImportError([RowError(None, "ファイルが大きすぎます（5MBまで）。")])
    if not data:
        raise FaqImportError([RowError(None, "ファイルが空です。")])
    name = filename.lower()
    if name.endswith(".xlsx"):
        return read_xlsx(data)
    if name.endswith(".csv"):
        return read_csv(data)
    raise FaqImportError(
        [RowError(None, "CSV（.csv）またはExcel（.xlsx）のファイルを選んでください。")]
    )


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in LIST_SPLIT.split(text) if item.strip()]


def parse_rows(
    rows: list[list[str]], city: CityConfig
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Validated entries from spreadsheet rows, and the row of each entry id.

    Raises FaqImportError listing every bad row.
    """
    rows = [[_cell_text(c) for c in r] for r in rows]
    header_index = next((i for i, r in enumerate(rows) if any(r)), None)
    if header_index is None:
        raise FaqImportError([RowError(None, "ファイルにデータがありません。")])
    header = rows[header_index]
    columns: dict[str, int] = {}
    errors: list[RowError] = []
    for col, cell in enumerate(header):
        if not cell:
            continue
        key = _column_key(cell)
        if key is None:
            if unicodedata.normalize("NFKC", cell).strip().lower() in IGNORED:
                continue
            errors.append(RowError(header_index + 1, f"不明な列名です: 「{cell}」"))
        elif key in columns:
            errors.append(RowError(header_index + 1, f"列「{cell}」が重複しています。"))
        else:
            columns[key] = col
    missing = [n for n in REQUIRED if n not in columns]
    if missing:
        labels = "、".join(header_text(n, FIELD_LABELS[n]) for n in missing)
        errors.append(RowError(header_index + 1, f"必要な列がありません: {labels}"))
    if errors:
        raise FaqImportError(errors)
    if len(rows) - header_index - 1 > MAX_ROWS:
        raise FaqImportError([RowError(None, f"行が多すぎます（{MAX_ROWS}行まで）。")])

    entries: list[dict[str, Any]] = []
    rows_of: dict[str, list[int]] = {}
    for i in range(header_index + 1, len(rows)):
        row = rows[i]
        if not any(row):
            continue  # blank lines between blocks are fine
        number = i + 1
        cell = {k: (row[c] if c < len(row) else "") for k, c in columns.items()}
        data: dict[str, Any] = {}
        for key, value in cell.items():
            if key in LIST_FIELDS:
                data[key] = _split_list(value)
            elif key == "action":
                data[key] = ACTION_WORDS.get(value.strip(), value.strip())
            elif key == "followup":
                if value:
                    data[key] = value
            else:
                data[key] = value
        entry, problems, _warnings = validate_entry(data, city)
        entry_id = data.get("id") or None
        for p in problems:
            errors.append(RowError(number, p.message, entry_id, p.field))
        if entry is not None:
            entries.append(entry)
            rows_of.setdefault(entry["id"], []).append(number)
    for entry_id, numbers in rows_of.items():
        if len(numbers) > 1:
            where = "、".join(f"{n}行目" for n in numbers)
            for n in numbers[1:]:
                errors.append(RowError(n, f"IDが重複しています（{where}）。", entry_id, "id"))
    if not entries and not errors:
        errors.append(RowError(None, "取り込む行がありません。"))
    if errors:
        raise FaqImportError(sorted(errors, key=lambda e: e.row or 0))
    return entries, {entry_id: numbers[0] for entry_id, numbers in rows_of.items()}


def check_whole(
    entries: list[dict[str, Any]], city: CityConfig, synonyms: Any, rows_of: dict[str, int]
) -> None:
    """Load the imported FAQ exactly as the bot would; problems are mapped back to rows."""
    faq, problems = check_snapshot(entries, city, synonyms)
    if faq is None:
        raise FaqImportError([_row_error(p, rows_of) for p in problems])


def _row_error(p: EntryProblem, rows_of: dict[str, int]) -> RowError:
    return RowError(rows_of.get(p.entry or ""), p.message, p.entry, p.field)


def import_file(
    filename: str, data: bytes, city: CityConfig, synonyms: Any = None
) -> list[dict[str, Any]]:
    """Entries of an uploaded CSV/xlsx, checked row by row and as a whole."""
    rows = read_table(filename, data)
    entries, rows_of = parse_rows(rows, city)
    check_whole(entries, city, synonyms, rows_of)
    return entries


# --- writing -------------------------------------------------------------------------------


def _row_values(entry: dict[str, Any]) -> list[str]:
    values = []
    for name, _label in COLUMNS:
        value = entry.get(name)
        if name == "action":
            values.append(str(value))
        elif isinstance(value, list):
            values.append("\n".join(value))
        else:
            values.append("" if value is None else str(value))
    return values


def export_csv(entries: Iterable[dict[str, Any]]) -> bytes:
    """UTF-8 with BOM so that Excel opens the Japanese text correctly."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header_text(n, label) for n, label in COLUMNS])
    for entry in entries:
        writer.writerow(_row_values(entry))
    return out.getvalue().encode("utf-8-sig")


def export_xlsx(entries: Iterable[dict[str, Any]]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    book = Workbook()
    sheet = book.active
    sheet.title = "FAQ"
    sheet.append([header_text(n, label) for n, label in COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for entry in entries:
        sheet.append(_row_values(entry))
    widths = {"id": 24, "category": 18, "title": 24, "action": 10, "answer": 60}
    for i, (name, _label) in enumerate(COLUMNS, start=1):
        letter = sheet.cell(row=1, column=i).column_letter
        sheet.column_dimensions[letter].width = widths.get(name, 36)
    for row in sheet.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
