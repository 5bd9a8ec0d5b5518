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
from dashboards.spreadsheet_cells import (  # exported cells escaped, imported ones restored
    FORMULA_LEADS,  # noqa: F401 (part of this module's interface)
    escape_formula,
    unescape_formula,
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
# Not an entry field: the draft revision an export was made from, on every row, so that an
# import can tell which edits were made since (see FaqVersions.replace_draft).
BASE_REVISION = ("base_revision", "書き出し時の下書き番号")
REQUIRED = ("id", "category", "title", "action", "questions", "answer")
LIST_FIELDS = ("questions", "keywords", "tags")
IGNORED = ("revision", "updated", "改訂番号", "更新日")  # exported by older tools; not imported
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 5000
MAX_TABLE_ROWS = MAX_ROWS + 100  # rows read at most, blank ones and the header included
MAX_COLUMNS = 50  # the FAQ has 9; a wider sheet is refused, not silently cut
MAX_REPORTED_ERRORS = 200  # problems listed for one file; the rest are counted
MAX_FIELD_CHARS = 100_000  # one CSV field (an answer is at most 2,000 characters)
# An .xlsx is a zip of XML: bound what it unpacks to, not only the upload's size.
XLSX_MAX_MEMBERS = 200
XLSX_MAX_UNCOMPRESSED = 32 * 1024 * 1024  # all members together, as the zip declares them
XLSX_MAX_RATIO = 100  # uncompressed / compressed per member (ordinary sheets: under 20)
XLSX_RATIO_FLOOR = 1024 * 1024  # members smaller than this are not ratio-checked
XLSX_MAX_CELLS = 1_000_000  # cells in the sheets' XML, empty formatted ones included
XLSX_MAX_ROW_CELLS = 1_000  # cells in one row (openpyxl holds a whole row in memory)
# Parts other than sheets (styles, shared strings, workbook, theme...) are read whole by
# openpyxl, each XML element becoming Python objects: bound each part and what is in it.
XLSX_MAX_PART = 16 * 1024 * 1024  # one member other than a sheet, as the zip declares it
XLSX_MAX_PART_ELEMENTS = 50_000  # elements in one such part (a plain styles.xml: ~200)
XLSX_MAX_SHARED_STRINGS = 100_000  # distinct strings (a full FAQ: 5,000 rows x 9 columns)
XLSX_MAX_SHARED_CHARS = 8_000_000  # their characters together
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
        if len(errors) > MAX_REPORTED_ERRORS:  # a page and a response of bounded size
            more = len(errors) - MAX_REPORTED_ERRORS
            errors = [
                *errors[:MAX_REPORTED_ERRORS],
                RowError(None, f"ほかにも{more}件の誤りがあります。上の誤りから直してください。"),
            ]
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


def _bounded_row(row: list[str], number: int) -> list[str]:
    if len(row) > MAX_COLUMNS:
        if any(cell.strip() for cell in row[MAX_COLUMNS:]):
            raise FaqImportError([RowError(number, f"列が多すぎます（{MAX_COLUMNS}列まで）。")])
        row = row[:MAX_COLUMNS]
    return row


def _too_many_rows() -> FaqImportError:
    return FaqImportError([RowError(None, f"行が多すぎます（{MAX_ROWS}行まで）。")])


def read_csv(data: bytes) -> list[list[str]]:
    """Rows of a CSV file in UTF-8 (with or without BOM) or Shift_JIS (Excel's default).

    Rows, columns and field length are bounded while reading, so a file of millions of
    empty lines or commas costs no more than the limits allow.
    """
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
    # csv builds a whole row before we see it: a line of millions of commas is refused here.
    if text.count(",") > MAX_TABLE_ROWS * MAX_COLUMNS:
        raise FaqImportError([RowError(None, f"列が多すぎます（{MAX_COLUMNS}列まで）。")])
    rows: list[list[str]] = []
    try:
        for number, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            if number > MAX_TABLE_ROWS:
                raise _too_many_rows()
            row = _bounded_row(row, number)
            if any(len(cell) > MAX_FIELD_CHARS for cell in row):
                raise FaqImportError(
                    [RowError(number, f"セルの文字数が多すぎます（{MAX_FIELD_CHARS}文字まで）。")]
                )
            rows.append([unescape_formula(cell.strip()) for cell in row])
    except csv.Error as exc:
        raise FaqImportError([RowError(None, f"CSVとして読み込めません: {exc}")]) from exc
    return rows


XLSX_UNREADABLE = "Excelファイル（.xlsx）として読み込めません。ファイルをご確認ください。"
XLSX_TOO_BIG = (
    "Excelファイルの中身が大きすぎます（展開後{mb}MBまで）。"
    "不要なシートや書式を削除するか、CSVで保存してお試しください。"
)


XLSX_TOO_MANY_CELLS = (
    f"Excelファイルのセルや行が多すぎます（1行{XLSX_MAX_ROW_CELLS:,}セル、"
    f"合計{XLSX_MAX_CELLS:,}セルまで）。書式だけのセルや空の行を削除するか、"
    "CSVで保存してお試しください。"
)


XLSX_PART_TOO_BIG = (
    "Excelファイルの中の書式や文字列のデータが大きすぎます"
    f"（1つあたり展開後{XLSX_MAX_PART // (1024 * 1024)}MB、"
    f"要素{XLSX_MAX_PART_ELEMENTS:,}個、文字列{XLSX_MAX_SHARED_STRINGS:,}件・"
    f"{XLSX_MAX_SHARED_CHARS:,}文字まで）。"
    "不要なシートや書式を削除するか、CSVで保存してお試しください。"
)


def check_xlsx_container(data: bytes) -> None:
    """Refuse a zip bomb before openpyxl unpacks anything: only the central directory is read.

    zipfile never yields more than a member's declared size, so bounding the declared
    sizes bounds the real work.
    """
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FaqImportError([RowError(None, XLSX_UNREADABLE)]) from exc
    too_big = FaqImportError(
        [RowError(None, XLSX_TOO_BIG.format(mb=XLSX_MAX_UNCOMPRESSED // (1024 * 1024)))]
    )
    if len(members) > XLSX_MAX_MEMBERS:
        raise too_big
    if sum(m.file_size for m in members) > XLSX_MAX_UNCOMPRESSED:
        raise too_big
    for m in members:
        if m.file_size > XLSX_RATIO_FLOOR and m.file_size > XLSX_MAX_RATIO * max(
            m.compress_size, 1
        ):
            raise too_big
    part_too_big = FaqImportError([RowError(None, XLSX_PART_TOO_BIG)])
    sheets = [m for m in members if _is_sheet(m.filename)]
    parts = [m for m in members if m not in sheets]
    if any(m.file_size > XLSX_MAX_PART for m in parts):
        raise part_too_big
    too_many = FaqImportError([RowError(None, XLSX_TOO_MANY_CELLS)])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for m in parts:
            if m.filename.lower().endswith((".xml", ".rels")):
                _check_part(archive, m, part_too_big)
        for m in sheets:
            _check_sheet_cells(archive, m, too_many)


def _is_sheet(name: str) -> bool:
    return name.startswith("xl/worksheets/") and name.endswith(".xml")


def _check_part(archive: Any, member: Any, too_big: FaqImportError) -> None:
    """Count a whole-read part's elements (or shared strings and their text) while
    streaming it (constant memory), before openpyxl builds objects for all of them.

    A styles.xml of 400,000 cell formats is 850 kB zipped and costs openpyxl seconds and
    hundreds of MB; so does a sharedStrings.xml of millions of short strings.
    """
    import xml.etree.ElementTree as ET

    shared = member.filename.lower().endswith("sharedstrings.xml")
    elements = strings = chars = 0
    open_elements: list[Any] = []
    try:
        with archive.open(member) as stream:
            for event, element in ET.iterparse(stream, events=("start", "end")):
                if event == "start":
                    open_elements.append(element)
                    elements += 1
                    if shared:
                        strings += element.tag.rsplit("}", 1)[-1] == "si"
                        if strings > XLSX_MAX_SHARED_STRINGS:
                            raise too_big
                    elif elements > XLSX_MAX_PART_ELEMENTS:
                        raise too_big
                    continue
                chars += len(element.text or "")
                if shared and chars > XLSX_MAX_SHARED_CHARS:
                    raise too_big
                open_elements.pop()
                if open_elements:  # counted: detach it (and any siblings parsed already)
                    del open_elements[-1][:]
    except ET.ParseError as exc:
        raise FaqImportError([RowError(None, XLSX_UNREADABLE)]) from exc


def _check_sheet_cells(archive: Any, member: Any, too_big: FaqImportError) -> None:
    """Count a sheet's cells while streaming its XML (constant memory), before openpyxl.

    openpyxl keeps a whole row in memory even in read-only mode, so one row of a million
    cells, small when zipped, would cost gigabytes there.
    """
    import xml.etree.ElementTree as ET

    total = 0
    in_row = 0
    rows = None  # <sheetData>: emptied after every row so that memory stays flat
    try:
        with archive.open(member) as stream:
            for event, element in ET.iterparse(stream, events=("start", "end")):
                tag = element.tag.rsplit("}", 1)[-1]
                if event == "start":
                    if tag == "sheetData":
                        rows = element
                    elif tag == "row":
                        in_row = 0
                    elif tag == "c":
                        total += 1
                        in_row += 1
                        if in_row > XLSX_MAX_ROW_CELLS or total > XLSX_MAX_CELLS:
                            raise too_big
                elif tag == "row":
                    total += 1  # an empty row costs openpyxl about as much as a cell
                    if total > XLSX_MAX_CELLS:
                        raise too_big
                    if rows is not None:
                        rows.clear()
    except ET.ParseError as exc:
        raise FaqImportError([RowError(None, XLSX_UNREADABLE)]) from exc


def read_xlsx(data: bytes) -> list[list[str]]:
    """Rows of the first sheet of an .xlsx workbook (cell values, not formulas).

    The container is checked first (``check_xlsx_container``); the sheet is then streamed
    in read-only mode with a row and column budget, whatever its declared dimensions say.
    """
    from openpyxl import load_workbook

    check_xlsx_container(data)
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # zipfile, XML and openpyxl errors alike
        raise FaqImportError([RowError(None, XLSX_UNREADABLE)]) from exc
    try:
        sheet = book.worksheets[0]
        rows: list[list[str]] = []
        cells = sheet.iter_rows(max_col=MAX_COLUMNS + 1, values_only=True)
        for number, row in enumerate(cells, start=1):
            if number > MAX_TABLE_ROWS:
                raise _too_many_rows()
            values = _bounded_row([_cell_text(v) for v in row], number)
            rows.append([unescape_formula(v) for v in values])
        return rows
    except FaqImportError:
        raise
    except Exception as exc:  # broken XML inside an otherwise valid zip
        raise FaqImportError([RowError(None, XLSX_UNREADABLE)]) from exc
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
        if key is None and _is_base_column(cell):
            continue
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


def _is_base_column(header: str) -> bool:
    name, label = BASE_REVISION
    text = unicodedata.normalize("NFKC", header).strip()
    return text.lower() in (name, header_text(name, label).lower()) or text == label


def base_revision_of(rows: list[list[str]]) -> int | None:
    """The draft revision the file was exported from (the lowest given), or None."""
    header_index = next((i for i, r in enumerate(rows) if any(r)), None)
    if header_index is None:
        return None
    column = next((c for c, cell in enumerate(rows[header_index]) if _is_base_column(cell)), None)
    if column is None:
        return None
    found: list[int] = []
    errors: list[RowError] = []
    for i in range(header_index + 1, len(rows)):
        text = rows[i][column].strip() if column < len(rows[i]) else ""
        if not text:
            continue
        if not text.isascii() or not text.isdigit() or len(text) > 9:
            message = "書き出し時の下書き番号が正しくありません（書き出したままにしてください）。"
            errors.append(RowError(i + 1, message))
            continue
        found.append(int(text))
    if errors:
        raise FaqImportError(errors)
    return min(found) if found else None


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
    return read_import(filename, data, city, synonyms)[0]


def read_import(
    filename: str, data: bytes, city: CityConfig, synonyms: Any = None
) -> tuple[list[dict[str, Any]], int | None]:
    """``import_file``'s entries, and the draft revision the file was exported from."""
    rows = read_table(filename, data)
    entries, rows_of = parse_rows(rows, city)
    base_revision = base_revision_of(rows)
    check_whole(entries, city, synonyms, rows_of)
    return entries, base_revision


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


def _headers(base_revision: int | None) -> list[str]:
    columns = COLUMNS + ([BASE_REVISION] if base_revision is not None else [])
    return [header_text(n, label) for n, label in columns]


def _export_row(entry: dict[str, Any], base_revision: int | None) -> list[str]:
    values = [escape_formula(v) for v in _row_values(entry)]
    return values + ([str(base_revision)] if base_revision is not None else [])


def export_csv(entries: Iterable[dict[str, Any]], base_revision: int | None = None) -> bytes:
    """UTF-8 with BOM so that Excel opens the Japanese text correctly.

    Cells that a spreadsheet would run as formulas are escaped (``escape_formula``);
    ``base_revision`` (the draft revision now) goes on every row for the import's check.
    """
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_headers(base_revision))
    for entry in entries:
        writer.writerow(_export_row(entry, base_revision))
    return out.getvalue().encode("utf-8-sig")


def export_xlsx(entries: Iterable[dict[str, Any]], base_revision: int | None = None) -> bytes:
    """The same rows as ``export_csv``, every cell a string cell (never a formula)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    book = Workbook()
    sheet = book.active
    sheet.title = "FAQ"
    sheet.append(_headers(base_revision))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for number, entry in enumerate(entries, start=2):
        for column, value in enumerate(_export_row(entry, base_revision), start=1):
            # Set as a string cell explicitly: openpyxl turns text starting with "=" into
            # a formula, and Excel would run it.
            cell = sheet.cell(row=number, column=column)
            cell.value = value
            cell.data_type = "s"
    widths = {"id": 24, "category": 18, "title": 24, "action": 10, "answer": 60}
    for i, (name, _label) in enumerate([*COLUMNS, BASE_REVISION], start=1):
        letter = sheet.cell(row=1, column=i).column_letter
        sheet.column_dimensions[letter].width = widths.get(name, 36)
    for row in sheet.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
