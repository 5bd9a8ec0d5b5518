"""Reports over the call records for a range of days (Asia/Tokyo), and their CSV export.

Definitions, so that every figure means the same on the page, in the CSV and in council
reports:

* **calls** (着信数): calls that started in the period, including those in progress.
* **handled** (応対数): calls that have ended and in which the caller said something to
  the bot (at least one decided turn) or asked for staff (e.g. key 0 during the
  greeting). Silent calls and hang-ups during the greeting are counted as ``no_speech``
  and left out of the rates: the bot had nothing to resolve.
* **bot-completed** (自動応答完結): a handled call in which no transfer to staff was
  requested, and which either ended with the caller's goodbye (outcome ``completed``) or
  was hung up by the caller after the bot had answered at least one question (an answer
  or a redirection to the right office). A caller who hangs up after hearing the answer
  has been served; one who hangs up after only reprompts has not, and neither has a
  call that failed (outcome ``error``).
* **自動応答完結率** = bot-completed ÷ handled.
* **transferred** (転送): handled calls in which a transfer to staff was requested
  (whatever its result); **転送率** = transferred ÷ handled. ``transfers_answered``
  counts those in which staff took the call. The reason is the call's first request.
* **average handling time** (平均通話時間): mean duration of handled calls.
* **turn latency** (応答遅延): caller's last speech → first bot audio of the reply,
  over every caller turn that got a reply, as p50/p95 (linear interpolation between
  ranks, as numpy's default; computed in Python, identical on SQLite and PostgreSQL).
* **staff hours saved** (削減職員時間) = bot-completed × ``staff_minutes_per_call`` ÷ 60.
* **top topics**: FAQ entries the bot answered, redirected or recognised as a staff
  topic, counted once per call (and as turns).

Rows are loaded with one query each and aggregated in Python: grouping by Tokyo day and
hour is then the same on both backends, and a city's volume (thousands of calls a day)
is small for this.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from dashboards.call_records import ANSWER_KINDS, Call, Transfer, Turn
from dashboards.config import ReportSettings
from dashboards.db import Database
from dashboards.spreadsheet_cells import escape_formula

TOKYO = ZoneInfo("Asia/Tokyo")
# Reply kinds whose FAQ entry is the topic the caller asked about.
TOPIC_ACTIONS = (*ANSWER_KINDS, "transfer", "out_of_hours")

TRANSFER_REASON_LABELS: dict[str, str] = {
    "caller_request": "お客様のご希望",
    "staff_topic": "職員の対応が必要なご用件",
    "not_understood": "ご質問を理解できなかった",
    "redirect_accepted": "他の窓口のご案内後のご希望",
    "turn_limit": "やり取りの回数の上限",
    "failure": "システムの障害",
    "shutdown": "サービスの停止",
}


def reason_label(reason: str) -> str:
    """Japanese label of a transfer reason code (the code itself if unknown)."""
    return TRANSFER_REASON_LABELS.get(reason, reason or "不明")


# -- periods -------------------------------------------------------------------------------
def day_bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """UTC instants of Tokyo midnight at ``start`` and after ``end`` (both days included)."""
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    lo = dt.datetime.combine(start, dt.time(), TOKYO)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), TOKYO)
    return lo.astimezone(dt.UTC), hi.astimezone(dt.UTC)


def tokyo_day(at: dt.datetime) -> dt.date:
    return at.astimezone(TOKYO).date()


def days_of(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


# -- figures -------------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) by linear interpolation between ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True)
class CallRow:
    """What the reports need of one call."""

    id: str
    started_at: dt.datetime
    outcome: str | None
    duration_ms: float | None
    turn_count: int
    answered_turns: int
    transfer_reason: str | None

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def handled(self) -> bool:
        return self.ended and (self.turn_count > 0 or self.transfer_reason is not None)

    @property
    def transferred(self) -> bool:
        return self.transfer_reason is not None

    @property
    def bot_completed(self) -> bool:
        if not self.handled or self.transferred:
            return False
        return self.outcome == "completed" or (
            self.outcome == "hung_up" and self.answered_turns > 0
        )


@dataclass(frozen=True)
class Figures:
    """The headline figures of a day or of the whole period (see the module docstring)."""

    calls: int
    handled: int
    bot_completed: int
    transferred: int
    transfers_answered: int
    no_speech: int
    in_progress: int
    completion_rate: float | None  # 0-1; None when nothing was handled
    transfer_rate: float | None
    avg_handling_s: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_turns: int
    staff_hours_saved: float


def figures(
    calls: Sequence[CallRow],
    latencies: Sequence[float],
    answered_transfer_calls: set[str],
    staff_minutes_per_call: float,
) -> Figures:
    """Figures of ``calls``; ``latencies`` are the reply latencies of their turns."""
    handled = [c for c in calls if c.handled]
    completed = sum(c.bot_completed for c in handled)
    transferred = [c for c in handled if c.transferred]
    durations = [c.duration_ms for c in handled if c.duration_ms is not None]
    n = len(handled)
    return Figures(
        calls=len(calls),
        handled=n,
        bot_completed=completed,
        transferred=len(transferred),
        transfers_answered=sum(c.id in answered_transfer_calls for c in transferred),
        no_speech=sum(c.ended and not c.handled for c in calls),
        in_progress=sum(not c.ended for c in calls),
        completion_rate=completed / n if n else None,
        transfer_rate=len(transferred) / n if n else None,
        avg_handling_s=sum(durations) / len(durations) / 1000.0 if durations else None,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        latency_turns=len(latencies),
        staff_hours_saved=completed * staff_minutes_per_call / 60.0,
    )


@dataclass(frozen=True)
class DayFigures:
    day: dt.date
    figures: Figures


@dataclass(frozen=True)
class HourCount:
    hour: int  # 0-23, Tokyo time
    calls: int


@dataclass(frozen=True)
class TopicCount:
    faq_id: str
    title: str | None  # from the ``titles`` given to the report
    calls: int  # calls in which the topic came up
    turns: int


@dataclass(frozen=True)
class ReasonCount:
    reason: str
    label: str  # Japanese
    calls: int
    answered: int  # staff took the call


@dataclass(frozen=True)
class Report:
    """Everything the reports page shows for one period."""

    start: dt.date
    end: dt.date
    staff_minutes_per_call: float
    totals: Figures
    days: list[DayFigures]
    hours: list[HourCount]  # 24 entries, calls by hour of day over the whole period
    topics: list[TopicCount]
    transfer_reasons: list[ReasonCount]
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


# -- loading -------------------------------------------------------------------------------
@dataclass
class _Records:
    calls: list[CallRow]
    turns: list[tuple[str, str | None, str | None, float | None]]  # call_id, faq, action, ms
    answered_transfer_calls: set[str]


def _load(db: Database, start: dt.date, end: dt.date, site: str | None) -> _Records:
    lo, hi = day_bounds(start, end)
    in_period = [Call.started_at >= lo, Call.started_at < hi]
    if site is not None:
        in_period.append(Call.site == site)
    with db.session() as s:
        calls = [
            CallRow(
                id=r.id,
                started_at=r.started_at,
                outcome=r.outcome,
                duration_ms=r.duration_ms,
                turn_count=r.turn_count or 0,
                answered_turns=r.answered_turns or 0,
                transfer_reason=r.transfer_reason,
            )
            for r in s.execute(
                select(
                    Call.id,
                    Call.started_at,
                    Call.outcome,
                    Call.duration_ms,
                    Call.turn_count,
                    Call.answered_turns,
                    Call.transfer_reason,
                ).where(*in_period)
            )
        ]
        turns = [
            (r.call_id, r.faq_id, r.action, r.latency_ms)
            for r in s.execute(
                select(Turn.call_id, Turn.faq_id, Turn.action, Turn.latency_ms)
                .join(Call, Call.id == Turn.call_id)
                .where(*in_period)
            )
        ]
        answered = set(
            s.scalars(
                select(Transfer.call_id)
                .join(Call, Call.id == Transfer.call_id)
                .where(*in_period, Transfer.status == "answered")
            )
        )
    return _Records(calls, turns, answered)


# -- public queries ------------------------------------------------------------------------
def calls_per_hour(calls: Iterable[CallRow]) -> list[HourCount]:
    """Calls by Tokyo hour of day (0-23), all 24 hours present."""
    counts = Counter(c.started_at.astimezone(TOKYO).hour for c in calls)
    return [HourCount(h, counts.get(h, 0)) for h in range(24)]


def top_topics(
    turns: Iterable[tuple[str, str | None, str | None, float | None]],
    titles: Mapping[str, str] | None = None,
    limit: int = 10,
) -> list[TopicCount]:
    """FAQ entries asked about, most calls first (ties: by id)."""
    per_call: dict[str, set[str]] = defaultdict(set)
    turn_counts: Counter[str] = Counter()
    for call_id, faq_id, action, _ in turns:
        if faq_id and action in TOPIC_ACTIONS:
            per_call[faq_id].add(call_id)
            turn_counts[faq_id] += 1
    ranked = sorted(per_call, key=lambda f: (-len(per_call[f]), f))[:limit]
    titles = titles or {}
    return [TopicCount(f, titles.get(f), len(per_call[f]), turn_counts[f]) for f in ranked]


def transfer_reasons(calls: Iterable[CallRow], answered: set[str]) -> list[ReasonCount]:
    """Handled calls with a transfer request, by their first reason, most first."""
    counts: Counter[str] = Counter()
    ok: Counter[str] = Counter()
    for c in calls:
        if c.handled and c.transferred:
            counts[c.transfer_reason or ""] += 1
            ok[c.transfer_reason or ""] += c.id in answered
    return [
        ReasonCount(r, reason_label(r), n, ok[r])
        for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def build_report(
    db: Database,
    start: dt.date,
    end: dt.date,
    settings: ReportSettings | None = None,
    *,
    titles: Mapping[str, str] | None = None,
    top_n: int = 10,
    site: str | None = None,
) -> Report:
    """The report for Tokyo days ``start``..``end`` (both included).

    ``titles`` maps FAQ ids to titles (the caller has the FAQ); ``site`` limits the
    report to one site's calls.
    """
    settings = settings or ReportSettings()
    minutes = settings.staff_minutes_per_call
    rec = _load(db, start, end, site)
    latency_by_call: dict[str, list[float]] = defaultdict(list)
    for call_id, _, _, latency in rec.turns:
        if latency is not None:
            latency_by_call[call_id].append(latency)
    calls_by_day: dict[dt.date, list[CallRow]] = defaultdict(list)
    for c in rec.calls:
        calls_by_day[tokyo_day(c.started_at)].append(c)

    def latencies(calls: Iterable[CallRow]) -> list[float]:
        return [x for c in calls for x in latency_by_call.get(c.id, ())]

    days = [
        DayFigures(
            d,
            figures(
                calls_by_day.get(d, []),
                latencies(calls_by_day.get(d, [])),
                rec.answered_transfer_calls,
                minutes,
            ),
        )
        for d in days_of(start, end)
    ]
    return Report(
        start=start,
        end=end,
        staff_minutes_per_call=minutes,
        totals=figures(rec.calls, latencies(rec.calls), rec.answered_transfer_calls, minutes),
        days=days,
        hours=calls_per_hour(rec.calls),
        topics=top_topics(rec.turns, titles, top_n),
        transfer_reasons=transfer_reasons(rec.calls, rec.answered_transfer_calls),
    )


# -- CSV -----------------------------------------------------------------------------------
DAY_COLUMNS = (
    "日付",
    "着信数",
    "応対数",
    "自動応答完結数",
    "自動応答完結率(%)",
    "転送数",
    "転送率(%)",
    "転送接続数",
    "無音・切断数",
    "平均通話時間(秒)",
    "応答遅延 中央値(ミリ秒)",
    "応答遅延 95パーセンタイル(ミリ秒)",
    "削減職員時間(時間)",
)


def _num(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100.0 * value:.1f}"


def _figure_row(label: str, f: Figures) -> list[str]:
    return [
        label,
        str(f.calls),
        str(f.handled),
        str(f.bot_completed),
        _pct(f.completion_rate),
        str(f.transferred),
        _pct(f.transfer_rate),
        str(f.transfers_answered),
        str(f.no_speech),
        _num(f.avg_handling_s),
        _num(f.latency_p50_ms, 0),
        _num(f.latency_p95_ms, 0),
        _num(f.staff_hours_saved, 2),
    ]


class _TextCells:
    """A csv writer whose cells are all written as text a spreadsheet never runs."""

    def __init__(self, writer: Any):
        self._writer = writer

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([escape_formula(str(cell)) for cell in row])


def report_csv(report: Report) -> str:
    """The report as CSV: UTF-8 with a BOM and CRLF, so that Excel shows the Japanese.

    Sections one after another, each with its own header row and a blank line between:
    days (with a 合計 row), calls by hour, top topics, transfer reasons. Every cell goes
    through ``escape_formula``: titles, topic ids and reason codes come from the FAQ and
    the call records, and a cell Excel would run as a formula must stay text.
    """
    out = io.StringIO()
    w = _TextCells(csv.writer(out, lineterminator="\r\n"))
    w.writerow(["期間", report.start.isoformat(), report.end.isoformat()])
    w.writerow(["1件あたりの職員対応時間(分)", _num(report.staff_minutes_per_call)])
    w.writerow([])
    w.writerow(DAY_COLUMNS)
    for day in report.days:
        w.writerow(_figure_row(day.day.isoformat(), day.figures))
    w.writerow(_figure_row("合計", report.totals))
    w.writerow([])
    w.writerow(["時間帯", "着信数"])
    for h in report.hours:
        w.writerow([f"{h.hour}時台", h.calls])
    w.writerow([])
    w.writerow(["順位", "FAQ ID", "トピック", "通話数", "発話数"])
    for rank, t in enumerate(report.topics, 1):
        w.writerow([rank, t.faq_id, t.title or "", t.calls, t.turns])
    w.writerow([])
    w.writerow(["転送理由", "理由コード", "件数", "職員が応答"])
    for r in report.transfer_reasons:
        w.writerow([r.label, r.reason, r.calls, r.answered])
    return "\ufeff" + out.getvalue()
