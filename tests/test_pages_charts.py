"""Server-side SVG charts: well-formed, accessible, bars proportional to the figures."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from dashboards.charts import (
    Datum,
    Segment,
    axis_ticks,
    bar_list_chart,
    column_chart,
    nice_step,
    share_chart,
)

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def bars(svg: ET.Element) -> dict[str, tuple[float, ET.Element]]:
    out = {}
    for g in svg.iter(f"{SVG}g"):
        if g.get("class") in ("bar", "segment"):
            out[g.get("data-label")] = (float(g.get("data-value")), g.find(f"{SVG}rect"))
    return out


def test_nice_axis() -> None:
    assert nice_step(1.75) == 2
    assert nice_step(9.25) == 10
    assert nice_step(0.075) == 0.1
    assert axis_ticks(3) == [0, 1, 2, 3]  # whole calls, not 0.75 of a call
    assert axis_ticks(7) == [0, 2, 4, 6, 8]
    assert axis_ticks(37) == [0, 10, 20, 30, 40]
    assert axis_ticks(1) == [0, 1]


def test_column_chart_heights_follow_values_and_labels_are_escaped() -> None:
    data = [Datum("9時", 2), Datum("10時", 4), Datum("11時", 0), Datum("<b>", 1)]
    svg = parse(column_chart(data, chart_id="hours", title="時間帯別の着信数"))
    assert svg.get("role") == "img"
    assert svg.find(f"{SVG}title").text == "時間帯別の着信数"
    desc = svg.find(f"{SVG}desc").text
    assert "9時 2件" in desc and "10時 4件" in desc
    found = bars(svg)
    assert set(found) == {"9時", "10時", "11時", "<b>"}
    h = {k: float(rect.get("height")) for k, (_, rect) in found.items()}
    assert h["10時"] == 2 * h["9時"] > 0
    assert h["11時"] == 0
    # Each bar has its own tooltip with the exact figure.
    tip = next(g for g in svg.iter(f"{SVG}g") if g.get("data-label") == "10時")
    assert tip.find(f"{SVG}title").text == "10時：4件"


def test_empty_charts_say_so() -> None:
    for markup in (
        column_chart([Datum("9時", 0)], chart_id="a", title="t"),
        bar_list_chart([], chart_id="b", title="t"),
        share_chart([Segment("x", 0, "#000")], chart_id="c", title="t"),
    ):
        svg = parse(markup)
        texts = [t.text for t in svg.iter(f"{SVG}text")]
        assert "この期間のデータはありません" in texts
        assert not bars(svg)


def test_bar_list_longest_bar_is_the_biggest_and_long_titles_are_clipped() -> None:
    long_title = "固定資産税の納税通知書が届かない場合の再発行と送付先の変更について"
    data = [Datum("口座振替の申し込み", 6), Datum(long_title, 3)]
    svg = parse(bar_list_chart(data, chart_id="topics", title="よくある質問"))
    found = bars(svg)
    w = {k: float(rect.get("width")) for k, (_, rect) in found.items()}
    assert w["口座振替の申し込み"] == 2 * w[long_title]
    shown = [t.text for t in svg.iter(f"{SVG}text")]
    assert any(t and t.endswith("…") and long_title.startswith(t[:-1]) for t in shown)
    assert "6件" in shown


def test_share_chart_parts_add_up_to_the_width() -> None:
    segments = [
        Segment("自動応答で完了", 6, "#2e7d32"),
        Segment("職員へ転送", 3, "#1565c0"),
        Segment("途中で終了", 1, "#9e9e9e"),
    ]
    svg = parse(share_chart(segments, chart_id="outcomes", title="通話の結果", width=700))
    found = bars(svg)
    widths = [float(rect.get("width")) for _, rect in found.values()]
    assert abs(sum(widths) - 700) < 0.5
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "自動応答で完了　6件（60.0%）" in texts
    assert "60%" in texts
