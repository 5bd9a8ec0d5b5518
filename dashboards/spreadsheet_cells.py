"""Text cells that a spreadsheet shows literally, never runs as a formula.

Exports (the FAQ spreadsheet, the report CSV) carry text that callers, operators or
other systems wrote: an FAQ title, a topic id, a transfer reason. A cell that starts with
``=``, ``+``, ``-``, ``@`` (or a tab, a carriage return, or the fullwidth forms Excel
also accepts) is run as a formula when the file is opened, e.g.
``=HYPERLINK("http://evil.example", "詳しくはこちら")``. Such cells get one leading
apostrophe, which Excel and LibreOffice hide and treat as "this is text".
"""

from __future__ import annotations

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")
ESCAPE_MARK = "'"


def _needs_escape(text: str) -> bool:
    """True for text a spreadsheet would run as a formula, or that already looks escaped."""
    return text.lstrip(ESCAPE_MARK).startswith(FORMULA_LEADS)


def escape_formula(text: str) -> str:
    """``text`` as a spreadsheet shows it literally: an apostrophe before a formula lead.

    Text that already starts with apostrophes before a formula lead gets one more, so that
    ``unescape_formula`` restores every value exactly.
    """
    return ESCAPE_MARK + text if _needs_escape(text) else text


def unescape_formula(text: str) -> str:
    """Undo ``escape_formula`` (and nothing else): one apostrophe before a formula lead."""
    if text.startswith(ESCAPE_MARK) and _needs_escape(text[1:]):
        return text[1:]
    return text
