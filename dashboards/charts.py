"""Server-side SVG charts for the reports page.

Charts are rendered on the server as plain SVG so that the page needs no JavaScript
library and nothing from the internet, prints well, and reads the same for a screen
reader: every chart carries a <title> and <desc>, every bar its own <title> with the
exact figure. Bars carry ``data-label`` / ``data-value`` so that tests (and people
copying figures) can read them back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# The page's own font stack (app.css): proportional Japanese fonts before monospaced ones.
FONT = (
    "'Noto Sans CJK JP','Noto Sans JP','Hiragino Sans','Yu Gothic UI',Meiryo,"
    "'IPAPGothic','IPAGothic',sans-serif"
)
BAR_COLOR = "#2f6fb3"
AXIS_COLOR = "#5b6470"
GRID_COLOR = "#e3e7ec"
TEXT_COLOR = "#1f2933"


@dataclass(frozen=True)
class Datum:
    """One bar: its axis label, its value and an optional longer tooltip."""

    label: str
    value: float
    detail: str | None = None


@dataclass(frozen=True)
class Segment:
    """One part of a whole (an outcome share), drawn in its own colour."""

    label: str
    value: float
    color: str


def nice_step(value: float) -> float:
    """The smallest 1/2/5 × 10ⁿ at or above ``value``: a round axis step."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        candidate = step * 10.0**exponent
        if candidate >= value - 1e-9:
            return candidate
    return 10.0 ** (exponent + 1)


def axis_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round ticks from 0 to just above ``maximum``, about ``count`` steps.

    Counts of calls get whole-number steps (1, 2, 5, 10, …), never "0.75 calls".
    """
    step = nice_step(maximum / count) if maximum > 0 else 1.0
    if maximum >= 1:
        step = max(step, 1.0)
    steps = max(1, math.ceil(maximum / step - 1e-9))
    return [round(step * i, 10) for i in range(steps + 1)]


def format_number(value: float, unit: str = "") -> str:
    """Integers without decimals, others with one; a thousands separator for big figures."""
    text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return text + unit


def _svg_open(chart_id: str, width: int, height: int, title: str, description: str) -> str:
    cid = escape(chart_id)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{cid}" '
        f'viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-labelledby="{cid}-title {cid}-desc" '
        f'style="max-width:{width}px;font-family:{FONT}">'
        f'<title id="{cid}-title">{escape(title)}</title>'
        f'<desc id="{cid}-desc">{escape(description)}</desc>'
    )


def _empty(chart_id: str, width: int, height: int, title: str, message: str) -> Markup:
    return Markup(
        _svg_open(chart_id, width, height, title, message)
        + f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
        f'font-size="15" fill="{AXIS_COLOR}">{escape(message)}</text></svg>'
    )


def column_chart(
    data: Sequence[Datum],
    *,
    chart_id: str,
    title: str,
    unit: str = "件",
    width: int = 540,
    height: int = 250,
    label_every: int = 1,
    empty_message: str = "この期間のデータはありません",
) -> Markup:
    """Vertical bars over a category axis (hours of the day, days of a range).

    ``label_every`` thins the axis labels when there are many bars (e.g. 31 days);
    every bar still has its label in its tooltip.
    """
    if not data or all(d.value == 0 for d in data):
        return _empty(chart_id, width, height, title, empty_message)
    left, right, top, bottom = 48, 12, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = axis_ticks(max(d.value for d in data))
    top_value = ticks[-1]
    summary = "、".join(f"{d.label} {format_number(d.value, unit)}" for d in data if d.value)
    parts = [_svg_open(chart_id, width, height, title, f"{title}：{summary}")]
    for tick in ticks:
        y = top + plot_h - plot_h * tick / top_value
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID_COLOR}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="{AXIS_COLOR}">{format_number(tick)}</text>'
        )
    slot = plot_w / len(data)
    bar_w = max(2.0, min(slot * 0.7, 48.0))
    for i, d in enumerate(data):
        x = left + slot * i + (slot - bar_w) / 2
        h = plot_h * d.value / top_value
        y = top + plot_h - h
        tip = d.detail or f"{d.label}：{format_number(d.value, unit)}"
        label, value = escape(d.label), f"{d.value:g}"
        parts.append(
            f'<g class="bar" data-label="{label}" data-value="{value}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
            f'fill="{BAR_COLOR}" rx="2"/>'
        )
        if d.value and bar_w >= 14:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" '
                f'font-size="11" fill="{TEXT_COLOR}">{format_number(d.value)}</text>'
            )
        parts.append("</g>")
        if i % max(1, label_every) == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 18}" text-anchor="middle" '
                f'font-size="12" fill="{AXIS_COLOR}">{label}</text>'
            )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="{AXIS_COLOR}" stroke-width="1"/></svg>'
    )
    return Markup("".join(parts))


def bar_list_chart(
    data: Sequence[Datum],
    *,
    chart_id: str,
    title: str,
    unit: str = "件",
    width: int = 540,
    label_width: int = 220,
    row_height: int = 30,
    empty_message: str = "この期間のデータはありません",
) -> Markup:
    """Horizontal bars with long labels on the left (FAQ titles), largest first."""
    if not data:
        return _empty(chart_id, width, 120, title, empty_message)
    top, bottom, right = 8, 8, 56
    height = top + bottom + row_height * len(data)
    plot_w = width - label_width - right
    biggest = max(d.value for d in data) or 1.0
    summary = "、".join(f"{d.label} {format_number(d.value, unit)}" for d in data)
    parts = [_svg_open(chart_id, width, height, title, f"{title}：{summary}")]
    for i, d in enumerate(data):
        y = top + row_height * i
        w = max(2.0, plot_w * d.value / biggest) if d.value else 0.0
        label = _clip(d.label, label_width)
        tip = d.detail or f"{d.label}：{format_number(d.value, unit)}"
        parts.append(
            f'<g class="bar" data-label="{escape(d.label)}" data-value="{d.value:g}">'
            f"<title>{escape(tip)}</title>"
            f'<text x="{label_width - 8}" y="{y + row_height / 2 + 5:.1f}" text-anchor="end" '
            f'font-size="14" fill="{TEXT_COLOR}">{escape(label)}</text>'
            f'<rect x="{label_width}" y="{y + 5}" width="{w:.1f}" height="{row_height - 10}" '
            f'fill="{BAR_COLOR}" rx="2"/>'
            f'<text x="{label_width + w + 6:.1f}" y="{y + row_height / 2 + 5:.1f}" '
            f'font-size="13" fill="{TEXT_COLOR}">{format_number(d.value, unit)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def share_chart(
    segments: Sequence[Segment],
    *,
    chart_id: str,
    title: str,
    unit: str = "件",
    width: int = 540,
    empty_message: str = "この期間のデータはありません",
) -> Markup:
    """One 100 % bar split into coloured parts, with a legend giving count and share.

    A single stacked bar reads faster than a pie: the parts line up from the left
    and the legend states the exact percentages.
    """
    total = sum(s.value for s in segments)
    if total <= 0:
        return _empty(chart_id, width, 100, title, empty_message)
    bar_h, legend_row = 36, 24
    shown = [s for s in segments if s.value > 0]
    height = 16 + bar_h + 16 + legend_row * len(segments)
    summary = "、".join(
        f"{s.label} {format_number(s.value, unit)}（{s.value / total:.0%}）" for s in segments
    )
    parts = [_svg_open(chart_id, width, height, title, f"{title}：{summary}")]
    x = 0.0
    for s in shown:
        w = width * s.value / total
        share = s.value / total
        parts.append(
            f'<g class="segment" data-label="{escape(s.label)}" data-value="{s.value:g}">'
            f"<title>{escape(s.label)}：{format_number(s.value, unit)}（{share:.1%}）</title>"
            f'<rect x="{x:.1f}" y="8" width="{w:.1f}" height="{bar_h}" fill="{s.color}"/>'
        )
        if w >= 48:
            parts.append(
                f'<text x="{x + w / 2:.1f}" y="{8 + bar_h / 2 + 5}" text-anchor="middle" '
                f'font-size="14" font-weight="bold" fill="#ffffff">{share:.0%}</text>'
            )
        parts.append("</g>")
        x += w
    for i, s in enumerate(segments):
        y = 8 + bar_h + 20 + legend_row * i
        share = s.value / total
        parts.append(
            f'<rect x="0" y="{y}" width="14" height="14" fill="{s.color}" rx="2"/>'
            f'<text x="22" y="{y + 12}" font-size="14" fill="{TEXT_COLOR}">'
            f"{escape(s.label)}　{format_number(s.value, unit)}（{share:.1%}）</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _clip(label: str, label_width: int, font_px: int = 14) -> str:
    """Shorten a label that would overflow its column (full-width characters ≈ 1 em)."""
    room = max(4, label_width // font_px - 1)
    width = 0.0
    for i, ch in enumerate(label):
        width += 1.0 if ord(ch) > 0x2E7F else 0.55
        if width > room:
            return label[:i] + "…"
    return label
