"""Reports over the call records for a range of days (Asia/Tokyo), and their CSV export.

Definitions, so that every figure means the same on the page, in the CSV and in council
reports:

* **calls** (着信数): calls that started in the period, including those in progress.
* **handled** (応対数): calls that have ended and in which the caller said something to
  the bot (at least one decided turn), asked for staff (e.g. key 0 during the greeting),
  hung up waiting for the bot, or that a failure cut off. Silent calls and hang-ups during
  the greeting are counted as ``no_speech`` and left out of the rates: the bot had nothing
  to resolve. A call a failure cut off stays in: the caller may have had a question.
* **answer heard**: a caller turn whose reply of kind answer or redirect started playing
  (``Turn.reply_kind``) and was not cut by the caller hanging up within its first
  ``CUT_WITHIN_MS`` (3 s) — the reply starts at ``speech_end_ms + latency_ms`` on the
  call's clock and the call ends at ``duration_ms``. A decision to answer is not enough:
  a caller who hangs up while the answer is still being synthesised heard nothing.
* **hung up waiting** (切断（待ち時間中）): outcome ``hung_up_waiting`` (the call core: the
  caller hung up after a question whose reply had not started, or within the first 3 s
  of it), and also a ``hung_up`` call whose records show the same (recorded before the
  core told the two apart). A caller whose last words were a goodbye was waiting for
  nothing: hanging up during the bot's goodbye is ``hung_up`` whatever was recorded.
* **failed** (切断（障害）): outcome ``error`` or ``abandoned`` — the process taking the call
  failed or died; never bot-completed.
* **bot-completed** (自動応答完結): a handled call in which no transfer to staff was
  requested, at least one answer was heard (an FAQ answer, a redirect, or where to ask
  about a charge that is not a tax), the caller was not left waiting, and which
  ended with the caller's goodbye (outcome ``completed``) or the caller hanging up
  (``hung_up``) after being served.
* **自動応答完結率** = bot-completed ÷ handled.
* **transferred** (転送): handled calls in which a transfer to staff was requested
  (whatever its result); **転送率** = transferred ÷ handled. ``transfers_answered``
  counts those in which staff took the call. The reason is the call's first request.
* **unresolved** (途中で終了（未解決）): the other handled calls (the caller left after
  reprompts or confirmations only, or said goodbye without an answer).
* Every call falls in exactly one of completed, transferred, hung up waiting, unresolved,
  failed, no speech and in progress (``OUTCOME_GROUPS``).
* **average handling time** (平均通話時間): mean duration of handled calls.
* **turn latency** (応答遅延): caller's last speech → first bot audio of the reply,
  over every caller turn that got a reply, as p50/p95 (linear interpolation between
  ranks, as numpy's default; computed in Python, identical on SQLite and PostgreSQL).
  A filler (「少々お待ちください」) is not the reply: the recorder never stores it as one.
* **turns without reply** (応答前に終了したターン): decided caller turns of ended calls that
  no reply audio followed — no reply started for them nor for any later turn — because
  the caller hung up or the call ended first. They have no latency, and are counted
  instead of being dropped from the latency figures without a word. Goodbyes excluded.
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
TOPIC_ACTIONS = (*ANSWER_KINDS, "transfer", "out_of_hours", "staff_unreachable")

# Call outcomes (``CallEnded.outcome``, or set when a never-ended call is closed).
WAITING_OUTCOME = "hung_up_waiting"  # the caller hung up while waiting for the bot
CALLER_HANGUP_OUTCOMES = ("hung_up", WAITING_OUTCOME)
FAILED_OUTCOMES = ("error", "abandoned")  # the process taking the call failed or died
BOT_ENDED_OUTCOMES = ("completed", "hung_up")  # may be bot-completed
# A reply the caller hung up on this soon after it started was not heard (as the call core
# decides ``hung_up_waiting``).
CUT_WITHIN_MS = 3000.0
# Decisions that leave the caller waiting for nothing: a caller who says goodbye and hangs
# up before the bot's own goodbye has not been left waiting.
NO_WAIT_ACTIONS = ("goodbye",)

# Where each call ends up in the reports, in the order they are shown; labels in Japanese.
OUTCOME_GROUPS: dict[str, str] = {
    "completed": "自動応答で完結",
    "transferred": "職員へ転送",
    "hung_up_waiting": "切断（待ち時間中）",
    "unresolved": "途中で終了（未解決）",
    "failed": "切断（障害）",
    "no_speech": "無音・すぐ切断",
    "in_progress": "通話中",
}

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
class TurnRow:
    """What the reports need of one caller turn."""

    call_id: str
    seq: int
    faq_id: str | None
    action: str | None  # None: speech the bot never decided on
    reply_kind: str | None  # None: no reply audio started for this turn
    speech_end_ms: float | None
    latency_ms: float | None

    @property
    def decided(self) -> bool:
        return self.action is not None

    @property
    def replied(self) -> bool:
        return self.reply_kind is not None

    @property
    def reply_start_ms(self) -> float | None:
        """When the reply's first audio played, on the call's clock (None if unknown)."""
        if self.speech_end_ms is None or self.latency_ms is None:
            return None
        return self.speech_end_ms + self.latency_ms


@dataclass(frozen=True)
class ReplyFacts:
    """What the caller heard of the bot's replies in one call (see the module docstring)."""

    answers_heard: int = 0
    turns_without_reply: int = 0  # 0 while the call is in progress
    left_waiting: bool = False  # the last question's reply never started, or was cut
    # The caller's last words were a goodbye, with no question left unanswered before it.
    ended_with_goodbye: bool = False


def reply_facts(
    turns: Iterable[TurnRow], outcome: str | None, duration_ms: float | None
) -> ReplyFacts:
    """Answers heard and questions left without reply in one call, from its turn rows.

    Only a caller hanging up cuts a reply (``CUT_WITHIN_MS``); a reply whose start is
    unknown (no speech end or latency recorded) counts as heard, since its audio did start.
    """
    ordered = sorted(turns, key=lambda t: t.seq)
    decided = [t for t in ordered if t.decided]
    hung_up = outcome in CALLER_HANGUP_OUTCOMES

    def cut(turn: TurnRow) -> bool:
        start = turn.reply_start_ms
        return (
            hung_up
            and start is not None
            and duration_ms is not None
            and duration_ms - start < CUT_WITHIN_MS
        )

    heard = sum(t.reply_kind in ANSWER_KINDS and not cut(t) for t in decided)
    if outcome is None:
        return ReplyFacts(answers_heard=heard)
    last_replied = max((t.seq for t in decided if t.replied), default=0)
    unreplied = sum(
        t.seq > last_replied and not t.replied and t.action not in NO_WAIT_ACTIONS for t in decided
    )
    # The reply to the last question started, but the caller hung up in its first seconds.
    last_cut = bool(decided) and decided[-1].action not in NO_WAIT_ACTIONS and cut(decided[-1])
    left_waiting = unreplied > 0 or last_cut
    return ReplyFacts(
        answers_heard=heard,
        turns_without_reply=unreplied,
        left_waiting=left_waiting,
        ended_with_goodbye=bool(ordered)
        and ordered[-1].action in NO_WAIT_ACTIONS
        and not left_waiting,
    )


@dataclass(frozen=True)
class CallRow:
    """What the reports need of one call."""

    id: str
    started_at: dt.datetime
    outcome: str | None
    duration_ms: float | None
    turn_count: int
    transfer_reason: str | None
    replies: ReplyFacts = ReplyFacts()

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED_OUTCOMES

    @property
    def caller_outcome(self) -> str | None:
        """The outcome as the reports count it: ``hung_up`` or ``hung_up_waiting`` as the
        turns show, whichever the call core recorded.

        A ``hung_up`` call whose last question went unanswered (recorded before the core
        told the two apart) is ``hung_up_waiting``; a caller who hung up during the bot's
        goodbye, after their own, was waiting for nothing and is ``hung_up``.
        """
        if self.outcome == "hung_up" and self.replies.left_waiting:
            return WAITING_OUTCOME
        if self.outcome == WAITING_OUTCOME and self.replies.ended_with_goodbye:
            return "hung_up"
        return self.outcome

    @property
    def hung_up_waiting(self) -> bool:
        return self.caller_outcome == WAITING_OUTCOME

    @property
    def handled(self) -> bool:
        return self.ended and (
            self.turn_count > 0 or self.transferred or self.hung_up_waiting or self.failed
        )

    @property
    def transferred(self) -> bool:
        return self.transfer_reason is not None

    @property
    def bot_completed(self) -> bool:
        return (
            self.handled
            and not self.transferred
            and self.caller_outcome in BOT_ENDED_OUTCOMES
            and self.replies.answers_heard > 0
        )

    @property
    def group(self) -> str:
        """The call's key in ``OUTCOME_GROUPS``: each call is in exactly one."""
        if not self.ended:
            return "in_progress"
        if not self.handled:
            return "no_speech"
        if self.transferred:
            return "transferred"
        if self.failed:
            return "failed"
        if self.hung_up_waiting:
            return "hung_up_waiting"
        if self.bot_completed:
            return "completed"
        return "unresolved"


@dataclass(frozen=True)
class Figures:
    """The headline figures of a day or of the whole period (see the module docstring)."""

    calls: int
    handled: int
    bot_completed: int
    transferred: int
    transfers_answered: int
    hung_up_waiting: int
    unresolved: int
    failed: int
    no_speech: int
    in_progress: int
    completion_rate: float | None  # 0-1; None when nothing was handled
    transfer_rate: float | None
    avg_handling_s: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_turns: int
    turns_without_reply: int
    staff_hours_saved: float

    def outcome_counts(self) -> dict[str, int]:
        """Calls per ``OUTCOME_GROUPS`` key, in its order; they add up to ``calls``."""
        counts = {
            "completed": self.bot_completed,
            "transferred": self.transferred,
            "hung_up_waiting": self.hung_up_waiting,
            "unresolved": self.unresolved,
            "failed": self.failed,
            "no_speech": self.no_speech,
            "in_progress": self.in_progress,
        }
        return {key: counts[key] for key in OUTCOME_GROUPS}


def figures(
    calls: Sequence[CallRow],
    latencies: Sequence[float],
    answered_transfer_calls: set[str],
    staff_minutes_per_call: float,
) -> Figures:
    """Figures of ``calls``; ``latencies`` are the reply latencies of their turns."""
    handled = [c for c in calls if c.handled]
    groups = Counter(c.group for c in calls)
    completed = groups["completed"]
    transferred = [c for c in handled if c.transferred]
    durations = [c.duration_ms for c in handled if c.duration_ms is not None]
    n = len(handled)
    return Figures(
        calls=len(calls),
        handled=n,
        bot_completed=completed,
        transferred=len(transferred),
        transfers_answered=sum(c.id in answered_transfer_calls for c in transferred),
        hung_up_waiting=groups["hung_up_waiting"],
        unresolved=groups["unresolved"],
        failed=groups["failed"],
        no_speech=groups["no_speech"],
        in_progress=groups["in_progress"],
        completion_rate=completed / n if n else None,
        transfer_rate=len(transferred) / n if n else None,
        avg_handling_s=sum(durations) / len(durations) / 1000.0 if durations else None,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        latency_turns=len(latencies),
        turns_without_reply=sum(c.replies.turns_without_reply for c in calls),
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
    turns: list[TurnRow]
    answered_transfer_calls: set[str]


def _load(db: Database, start: dt.date, end: dt.date, site: str | None) -> _Records:
    lo, hi = day_bounds(start, end)
    in_period = [Call.started_at >= lo, Call.started_at < hi]
    if site is not None:
        in_period.append(Call.site == site)
    with db.session() as s:
        turns = [
            TurnRow(
                call_id=r.call_id,
                seq=r.seq,
                faq_id=r.faq_id,
                action=r.action,
                reply_kind=r.reply_kind,
                speech_end_ms=r.speech_end_ms,
                latency_ms=r.latency_ms,
            )
            for r in s.execute(
                select(
                    Turn.call_id,
                    Turn.seq,
                    Turn.faq_id,
                    Turn.action,
                    Turn.reply_kind,
                    Turn.speech_end_ms,
                    Turn.latency_ms,
                )
                .join(Call, Call.id == Turn.call_id)
                .where(*in_period)
            )
        ]
        turns_by_call: dict[str, list[TurnRow]] = defaultdict(list)
        for turn in turns:
            turns_by_call[turn.call_id].append(turn)
        calls = [
            CallRow(
                id=r.id,
                started_at=r.started_at,
                outcome=r.outcome,
                duration_ms=r.duration_ms,
                turn_count=r.turn_count or 0,
                transfer_reason=r.transfer_reason,
                replies=reply_facts(turns_by_call.get(r.id, ()), r.outcome, r.duration_ms),
            )
            for r in s.execute(
                select(
                    Call.id,
                    Call.started_at,
                    Call.outcome,
                    Call.duration_ms,
                    Call.turn_count,
                    Call.transfer_reason,
                ).where(*in_period)
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
    turns: Iterable[TurnRow],
    titles: Mapping[str, str] | None = None,
    limit: int = 10,
) -> list[TopicCount]:
    """FAQ entries asked about, most calls first (ties: by id)."""
    per_call: dict[str, set[str]] = defaultdict(set)
    turn_counts: Counter[str] = Counter()
    for turn in turns:
        if turn.faq_id and turn.action in TOPIC_ACTIONS:
            per_call[turn.faq_id].add(turn.call_id)
            turn_counts[turn.faq_id] += 1
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
    for turn in rec.turns:
        if turn.replied and turn.latency_ms is not None:
            latency_by_call[turn.call_id].append(turn.latency_ms)
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
    "切断（待ち時間中）数",
    "途中で終了（未解決）数",
    "切断（障害）数",
    "無音・切断数",
    "平均通話時間(秒)",
    "応答遅延 中央値(ミリ秒)",
    "応答遅延 95パーセンタイル(ミリ秒)",
    "応答遅延の対象ターン数",
    "応答前に終了したターン数",
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
        str(f.hung_up_waiting),
        str(f.unresolved),
        str(f.failed),
        str(f.no_speech),
        _num(f.avg_handling_s),
        _num(f.latency_p50_ms, 0),
        _num(f.latency_p95_ms, 0),
        str(f.latency_turns),
        str(f.turns_without_reply),
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
    days (with a 合計 row), the period's calls by outcome, calls by hour, top topics,
    transfer reasons. Every cell goes
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
    w.writerow(["通話の結果", "件数"])
    for key, count in report.totals.outcome_counts().items():
        w.writerow([OUTCOME_GROUPS[key], count])
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
