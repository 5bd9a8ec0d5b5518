"""The reports page, its JSON summary and the CSV export.

The figures come from ``dashboards.reports.build_report`` (definitions there); this
module only picks the period, turns the report into headline figures and server-side
SVG charts (``dashboards.charts``) with Japanese labels, and serves the CSV.
Periods are whole days in Asia/Tokyo, both ends included; the default is today.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from dashboards.accounts import User
from dashboards.app import render
from dashboards.charts import Datum, Segment, bar_list_chart, column_chart, share_chart
from dashboards.reports import OUTCOME_GROUPS, TOKYO, Report, build_report, report_csv
from dashboards.security import require_role
from dashboards.services import Services, get_services

log = logging.getLogger(__name__)
router = APIRouter()

REPORT_ROLES = ("admin", "operator", "viewer")

ReportUser = Annotated[User, Depends(require_role(*REPORT_ROLES))]
ServicesDep = Annotated[Services, Depends(get_services)]
MAX_DAYS = 366  # a year at most per request: reports stay quick on a busy city's records
WEEKDAYS = "月火水木金土日"
PRESETS = (("today", "今日"), ("7d", "過去7日間"), ("month", "今月"))

OUTCOME_COLORS = {
    "completed": "#2e7d32",
    "transferred": "#1565c0",
    "hung_up_waiting": "#c2410c",
    "unresolved": "#f59e0b",
    "failed": "#8a1c12",
    "no_speech": "#9aa5b1",
    "in_progress": "#7c3aed",
}
# Every outcome is shown even at 0 — a dashboard that names callers left waiting or calls
# cut by a failure only when there are some hides that they are being counted — except
# calls in progress, which only matter when there are some.
HIDDEN_WHEN_ZERO = ("in_progress",)


class PeriodError(ValueError):
    """A period the user asked for that cannot be reported (message in Japanese)."""


@dataclass(frozen=True)
class Period:
    """Tokyo days ``start``..``end``, both included, and the preset it came from."""

    start: dt.date
    end: dt.date
    preset: str | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def caption(self) -> str:
        if self.start == self.end:
            return japanese_date(self.start)
        return f"{japanese_date(self.start)}〜{japanese_date(self.end)}（{self.days}日間）"

    def query(self) -> str:
        return urlencode({"from": self.start.isoformat(), "to": self.end.isoformat()})


def today_in_tokyo() -> dt.date:
    return dt.datetime.now(TOKYO).date()


def japanese_date(day: dt.date) -> str:
    return f"{day.year}年{day.month}月{day.day}日（{WEEKDAYS[day.weekday()]}）"


def preset_period(preset: str, today: dt.date) -> Period:
    """今日 / 過去7日間 (today and the 6 days before) / 今月 (the 1st to today)."""
    if preset == "today":
        return Period(today, today, preset)
    if preset == "7d":
        return Period(today - dt.timedelta(days=6), today, preset)
    if preset == "month":
        return Period(today.replace(day=1), today, preset)
    raise PeriodError(
        f"期間の指定「{preset}」は使えません。今日・過去7日間・今月から選んでください。"
    )


def parse_period(
    start: str | None, end: str | None, preset: str | None, today: dt.date | None = None
) -> Period:
    """The period of a request: a preset, explicit dates (YYYY-MM-DD), or today.

    One date alone means that single day. Raises ``PeriodError`` with a message the
    user can act on.
    """
    today = today or today_in_tokyo()
    if preset:
        return preset_period(preset, today)
    if not start and not end:
        return preset_period("today", today)
    try:
        first = dt.date.fromisoformat(start or end or "")
        last = dt.date.fromisoformat(end or start or "")
    except ValueError as exc:
        raise PeriodError("日付は「2026-04-01」のように 年-月-日 の形で指定してください。") from exc
    if last < first:
        raise PeriodError("終了日が開始日より前になっています。期間を確認してください。")
    if (last - first).days + 1 > MAX_DAYS:
        raise PeriodError(f"一度に集計できるのは{MAX_DAYS}日までです。期間を短くしてください。")
    period = Period(first, last)
    for key, _ in PRESETS:  # highlight the matching preset button
        if preset_period(key, today) == dataclasses.replace(period, preset=key):
            return dataclasses.replace(period, preset=key)
    return period


def request_period(
    start: Annotated[
        str | None, Query(alias="from", max_length=20, description="first day, YYYY-MM-DD (Tokyo)")
    ] = None,
    end: Annotated[
        str | None, Query(alias="to", max_length=20, description="last day, YYYY-MM-DD (Tokyo)")
    ] = None,
    preset: Annotated[str | None, Query(description="today, 7d or month")] = None,
) -> Period:
    """Dependency for the APIs: the period, or 400 with the reason."""
    try:
        return parse_period(start, end, preset)
    except PeriodError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc


RequestPeriod = Annotated[Period, Depends(request_period)]


# -- FAQ titles ----------------------------------------------------------------------------
_shipped_titles: dict[str, str] | None = None


def faq_titles(services: Services) -> dict[str, str]:
    """FAQ id → title, from the FAQ the bot is using (else the shipped FAQ).

    Reports and the unanswered list show titles, not ids: operators know their FAQ by
    its topics. Ids no longer in the FAQ are shown as ids.
    """
    global _shipped_titles
    bot = services.bot
    if bot is not None:
        return {e.id: e.title for e in bot.understanding.faq}
    if _shipped_titles is None:
        from faq.store import load_faq

        try:
            _shipped_titles = {e.id: e.title for e in load_faq()}
        except Exception:  # a broken FAQ must not take the reports down
            log.exception("could not load the FAQ for topic titles")
            return {}
    return _shipped_titles


async def load_report(services: Services, period: Period) -> Report:
    """Build the report off the event loop (it reads the database)."""
    titles = await asyncio.to_thread(faq_titles, services)
    return await asyncio.to_thread(
        build_report,
        services.db,
        period.start,
        period.end,
        services.settings.reports,
        titles=titles,
    )


# -- presentation --------------------------------------------------------------------------
def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def minutes_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    total = round(seconds)
    return f"{total // 60}分{total % 60:02d}秒" if total >= 60 else f"{total}秒"


def seconds_text(ms: float | None) -> str:
    return "—" if ms is None else f"{ms / 1000:.2f}秒"


def hours_text(hours: float) -> str:
    if hours < 1:
        return f"{hours * 60:.0f}分"
    return f"{hours:.1f}時間"


def kpis(report: Report) -> list[dict[str, str]]:
    """The headline figures, each with a note that says what it counts."""
    t = report.totals
    calls_note = f"応対 {t.handled}件・無音/すぐ切断 {t.no_speech}件"
    if t.in_progress:
        calls_note += f"・通話中 {t.in_progress}件"
    top_reason = report.transfer_reasons[0].label if report.transfer_reasons else None
    transfer_note = f"{t.transferred}件（職員が応答 {t.transfers_answered}件）"
    if top_reason:
        transfer_note += f"・主な理由：{top_reason}"
    return [
        {"key": "calls", "label": "総着信数", "value": f"{t.calls:,}件", "note": calls_note},
        {
            "key": "completion",
            "label": "自動応答完結率",
            "value": percent(t.completion_rate),
            "note": f"ボットだけで完結 {t.bot_completed}件 ／ 応対 {t.handled}件"
            f"（うち{OUTCOME_GROUPS['hung_up_waiting']} {t.hung_up_waiting}件）",
        },
        {
            "key": "transfer",
            "label": "転送率",
            "value": percent(t.transfer_rate),
            "note": transfer_note,
        },
        {
            "key": "handling",
            "label": "平均処理時間",
            "value": minutes_seconds(t.avg_handling_s),
            "note": "応対した通話1件あたりの通話時間",
        },
        {
            "key": "latency",
            "label": "応答までの時間（中央値 ／ 95%）",
            "value": f"{seconds_text(t.latency_p50_ms)} ／ {seconds_text(t.latency_p95_ms)}",
            "note": f"お客様が話し終えてからボットが応答を話し始めるまで（{t.latency_turns}回の"
            "応答。「少々お待ちください」などのつなぎの言葉は応答に数えません）",
        },
        {
            "key": "unreplied",
            "label": "応答前に終了したターン",
            "value": f"{t.turns_without_reply:,}回",
            "note": "お客様が話し終えた後、ボットの応答が流れる前に通話が終わった回数"
            "（応答までの時間には含まれません）",
        },
        {
            "key": "saved",
            "label": "削減できた職員の作業時間（推定）",
            "value": hours_text(t.staff_hours_saved),
            "note": f"自動応答完結 {t.bot_completed}件 × 1件{report.staff_minutes_per_call:g}分",
        },
    ]


def hour_window(counts: list[int]) -> range:
    """Office hours (8–18時) widened to any hour that had calls."""
    busy = [h for h, n in enumerate(counts) if n]
    first = min([8, *busy])
    last = max([18, *busy])
    return range(first, last + 1)


def charts(report: Report) -> list[dict[str, Any]]:
    """The charts of the page, as SVG markup with captions."""
    counts = [h.calls for h in report.hours]
    hours = [Datum(f"{h}時", counts[h], f"{h}時台：{counts[h]}件") for h in hour_window(counts)]
    days = [
        Datum(
            f"{d.day.month}/{d.day.day}（{WEEKDAYS[d.day.weekday()]}）"
            if len(report.days) <= 7
            else f"{d.day.month}/{d.day.day}",
            d.figures.calls,
            f"{japanese_date(d.day)}：{d.figures.calls}件",
        )
        for d in report.days
    ]
    outcomes = [
        Segment(row["label"], row["calls"], OUTCOME_COLORS[row["key"]])
        for row in outcome_rows(report)
    ]
    reasons = [
        Datum(r.label, r.calls, f"{r.label}：{r.calls}件（職員が応答 {r.answered}件）")
        for r in report.transfer_reasons
    ]
    topics = [
        Datum(
            tp.title or tp.faq_id,
            tp.calls,
            f"{tp.title or tp.faq_id}（{tp.faq_id}）：{tp.calls}件の通話・{tp.turns}回",
        )
        for tp in report.topics
    ]
    out = [
        {
            "caption": "時間帯別の着信数",
            "size": "normal",
            "svg": column_chart(hours, chart_id="chart-hours", title="時間帯別の着信数"),
            "note": None,
        },
        {
            "caption": "日別の着信数",
            "size": "normal",
            "svg": column_chart(
                days,
                chart_id="chart-days",
                title="日別の着信数",
                label_every=max(1, -(-len(days) // 12)),
            ),
            "note": None,
        },
        {
            "caption": "通話の結果",
            "size": "normal",
            "svg": share_chart(outcomes, chart_id="chart-outcomes", title="通話の結果"),
            "note": "完結率・転送率は、応対件数（「無音・すぐ切断」と「通話中」を除く。"
            "「切断（待ち時間中）」と「切断（障害）」は含む）に対する割合です。",
        },
        {
            "caption": "転送の理由",
            "size": "normal",
            "svg": bar_list_chart(
                reasons, chart_id="chart-reasons", title="転送の理由", label_width=240
            ),
            "note": None,
        },
        {
            "caption": "よく聞かれた質問（上位10件）",
            "size": "wide",
            "svg": bar_list_chart(
                topics,
                chart_id="chart-topics",
                title="よく聞かれた質問",
                width=1080,
                label_width=360,
            ),
            "note": "同じ通話で何度聞かれても1件と数えます。",
        },
    ]
    return out


def outcome_rows(report: Report) -> list[dict[str, Any]]:
    """The period's calls by outcome, for the chart and the table below it.

    Each call is in exactly one row; ``share`` is of all calls, ``handled_share`` of the
    handled calls (the denominator of the rates) for the rows that are part of it.
    """
    t = report.totals
    handled_keys = ("completed", "transferred", "hung_up_waiting", "unresolved", "failed")
    rows = []
    for key, calls in t.outcome_counts().items():
        if key in HIDDEN_WHEN_ZERO and not calls:
            continue
        rows.append(
            {
                "key": key,
                "label": OUTCOME_GROUPS[key],
                "calls": calls,
                "share": percent(calls / t.calls if t.calls else None),
                "handled_share": percent(calls / t.handled if t.handled else None)
                if key in handled_keys
                else "—",
            }
        )
    return rows


def presets(period: Period, today: dt.date) -> list[dict[str, Any]]:
    return [
        {
            "label": label,
            "href": "/reports?" + preset_period(key, today).query(),
            "active": period.preset == key,
        }
        for key, label in PRESETS
    ]


def report_json(report: Report) -> dict[str, Any]:
    """The report as JSON-able data (dates as ISO strings)."""

    def convert(value: Any) -> Any:
        if isinstance(value, dt.datetime | dt.date):
            return value.isoformat()
        if isinstance(value, Mapping):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    return convert(dataclasses.asdict(report))


# -- routes --------------------------------------------------------------------------------
@router.get("/reports", response_class=HTMLResponse, include_in_schema=False)
async def reports_page(
    request: Request,
    user: ReportUser,
    services: ServicesDep,
    start: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=20)] = None,
    preset: Annotated[str | None, Query()] = None,
) -> Response:
    today = today_in_tokyo()
    error = None
    try:
        period = parse_period(start, end, preset, today)
    except PeriodError as exc:
        error = str(exc)
        period = preset_period("today", today)
    report = await load_report(services, period)
    context = {
        "user": user,
        "range": period,
        "presets": presets(period, today),
        "export_href": "/api/reports/export.csv?" + period.query(),
        "kpis": kpis(report),
        "charts": charts(report),
        "outcomes": outcome_rows(report),
        "error": error,
    }
    return render(request, "reports.html", context, status_code=400 if error else 200)


@router.get("/api/reports/summary")
async def reports_summary(
    period: RequestPeriod,
    user: ReportUser,
    services: ServicesDep,
) -> JSONResponse:
    """Figures of the period: totals, per day, per hour, top topics, transfer reasons."""
    report = await load_report(services, period)
    return JSONResponse(report_json(report))


@router.get("/api/reports/export.csv")
async def reports_export(
    period: RequestPeriod,
    user: ReportUser,
    services: ServicesDep,
) -> Response:
    """The report as CSV (UTF-8 with BOM for Excel), named after the period."""
    report = await load_report(services, period)
    name = f"voicebot-report-{period.start.isoformat()}_{period.end.isoformat()}.csv"
    return Response(
        report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
