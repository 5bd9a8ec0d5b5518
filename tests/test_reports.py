"""Reports on calls with known outcomes, latencies and times, on SQLite and PostgreSQL.

The calls are written through the real recorder from the events a call would emit
(``dbfixtures.scripted_call``); every expected figure below is worked out by hand.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from zoneinfo import ZoneInfo

import dbfixtures
import numpy as np
import pytest
import waiting_calls
from dbfixtures import ScriptedTurn, record, scripted_call
from sqlalchemy import select, update

from dashboards.call_records import Call, Turn
from dashboards.config import ReportSettings
from dashboards.reports import (
    OUTCOME_GROUPS,
    Figures,
    build_report,
    day_bounds,
    percentile,
    report_csv,
)
from dashboards.spreadsheet_cells import FORMULA_LEADS

# The same tests on SQLite and PostgreSQL (fixtures from dbfixtures).
postgres_url = dbfixtures.postgres_url
database_url = dbfixtures.database_url
db = dbfixtures.db

JST = ZoneInfo("Asia/Tokyo")
DAY1, DAY2 = dt.date(2026, 11, 2), dt.date(2026, 11, 3)
TITLES = {
    "payment.lost-notice": "納付書の再発行",
    "payment.account-transfer": "口座振替",
    "juminzei.breakdown": "住民税の内訳",
    "payment.methods": "市税の納付方法",
}


def jst(day: dt.date, hh: int, mm: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hh, mm, tzinfo=JST)


def T(text, action="answer", faq_id=None, latency_ms=500.0, score=0.9) -> ScriptedTurn:
    return ScriptedTurn(text, action, faq_id, score, latency_ms)


CALLS = [
    # day 1
    scripted_call(
        "c1",
        jst(DAY1, 9, 15),
        [
            T("納付書をなくした", faq_id="payment.lost-notice", latency_ms=400),
            T("以上です", "goodbye", latency_ms=300),
        ],
        outcome="completed",
        duration_s=60,
    ),
    scripted_call(
        "c2",
        jst(DAY1, 9, 40),
        [T("口座振替にしたい", faq_id="payment.account-transfer", latency_ms=600)],
        outcome="hung_up",
        duration_s=45,
    ),
    scripted_call(
        "c3",
        jst(DAY1, 10, 5),
        [T("住民税の内訳を知りたい", "transfer", "juminzei.breakdown", latency_ms=800)],
        outcome="transferred",
        duration_s=30,
        transfer=("staff_topic", True),
    ),
    scripted_call(
        "c4",
        jst(DAY1, 10, 30),
        [T("あのー", "reprompt", latency_ms=500, score=0.1)],
        outcome="hung_up",
        duration_s=20,
    ),
    scripted_call("c5", jst(DAY1, 23, 50), [], outcome="hung_up", duration_s=8),
    # day 2; c6 is on day 1 in UTC (15:10Z) but on day 2 in Tokyo
    scripted_call(
        "c6",
        jst(DAY2, 0, 10),
        [
            T("納付書がない", faq_id="payment.lost-notice", latency_ms=1000),
            T("ありがとう", "goodbye", latency_ms=200),
        ],
        outcome="completed",
        duration_s=90,
    ),
    scripted_call(
        "c7",
        jst(DAY2, 14, 0),
        [
            T("ええと", "reprompt", latency_ms=700, score=0.2),
            T("うーん", "transfer", latency_ms=900, score=0.1),
        ],
        outcome="hung_up",
        duration_s=50,
        transfer=("not_understood", False),
    ),
    scripted_call(
        "c8",
        jst(DAY2, 14, 20),
        [T("払い方を教えて", faq_id="payment.methods", latency_ms=300)],
        outcome=None,  # still in progress
    ),
    # outside the period, one minute either side of it
    scripted_call(
        "c9", jst(DAY1, 0, 0) - dt.timedelta(minutes=1), [T("x", faq_id="payment.methods")]
    ),
    scripted_call(
        "c10", jst(DAY2 + dt.timedelta(days=1), 0, 0), [T("x", faq_id="payment.methods")]
    ),
]


@pytest.fixture
def report(db):
    record(db, *CALLS)
    return build_report(db, DAY1, DAY2, ReportSettings(staff_minutes_per_call=6.0), titles=TITLES)


def test_totals(report):
    t = report.totals
    assert (t.calls, t.handled, t.bot_completed) == (8, 6, 3)
    assert (t.transferred, t.transfers_answered) == (2, 1)
    assert (t.no_speech, t.in_progress) == (1, 1)
    # c4 hung up after a reprompt only; nobody hung up waiting, no failure.
    assert (t.unresolved, t.hung_up_waiting, t.failed, t.turns_without_reply) == (1, 0, 0, 0)
    assert sum(t.outcome_counts().values()) == t.calls
    assert t.completion_rate == pytest.approx(0.5)
    assert t.transfer_rate == pytest.approx(1 / 3)
    assert t.avg_handling_s == pytest.approx((60 + 45 + 30 + 20 + 90 + 50) / 6)
    # latencies 200 300 300 400 500 600 700 800 900 1000
    assert t.latency_turns == 10
    assert t.latency_p50_ms == pytest.approx(550.0)
    assert t.latency_p95_ms == pytest.approx(955.0)
    assert t.staff_hours_saved == pytest.approx(0.3)


def test_days_follow_tokyo_midnight(report):
    d1, d2 = report.days
    assert (d1.day, d2.day) == (DAY1, DAY2)
    f1, f2 = d1.figures, d2.figures
    assert (f1.calls, f1.handled, f1.bot_completed, f1.transferred, f1.no_speech) == (5, 4, 2, 1, 1)
    assert f1.completion_rate == pytest.approx(0.5)
    assert f1.transfer_rate == pytest.approx(0.25)
    assert f1.avg_handling_s == pytest.approx(38.75)
    assert (f1.latency_p50_ms, f1.latency_p95_ms) == (pytest.approx(500), pytest.approx(760))
    assert f1.staff_hours_saved == pytest.approx(0.2)
    assert (f2.calls, f2.handled, f2.bot_completed, f2.transferred, f2.in_progress) == (
        3,
        2,
        1,
        1,
        1,
    )
    assert f2.transfers_answered == 0
    assert f2.avg_handling_s == pytest.approx(70.0)
    assert (f2.latency_p50_ms, f2.latency_p95_ms) == (pytest.approx(700), pytest.approx(980))


def test_calls_per_hour(report):
    hours = {h.hour: h.calls for h in report.hours}
    assert len(report.hours) == 24
    assert hours == {h: {0: 1, 9: 2, 10: 2, 14: 2, 23: 1}.get(h, 0) for h in range(24)}


def test_top_topics_and_transfer_reasons(report):
    assert [(t.faq_id, t.title, t.calls, t.turns) for t in report.topics] == [
        ("payment.lost-notice", "納付書の再発行", 2, 2),
        ("juminzei.breakdown", "住民税の内訳", 1, 1),
        ("payment.account-transfer", "口座振替", 1, 1),
        ("payment.methods", "市税の納付方法", 1, 1),
    ]
    assert [(r.reason, r.label, r.calls, r.answered) for r in report.transfer_reasons] == [
        ("not_understood", "ご質問を理解できなかった", 1, 0),
        ("staff_topic", "職員の対応が必要なご用件", 1, 1),
    ]


def test_staff_minutes_setting_scales_hours_saved(db):
    record(db, *CALLS)
    r = build_report(db, DAY1, DAY2, ReportSettings(staff_minutes_per_call=10.0))
    assert r.totals.staff_hours_saved == pytest.approx(0.5)
    assert r.topics[0].title is None  # no titles given


def test_site_filter(db):
    record(db, *CALLS)
    assert build_report(db, DAY1, DAY2, site="default").totals.calls == 8
    assert build_report(db, DAY1, DAY2, site="elsewhere").totals.calls == 0


def test_csv(report):
    text = report_csv(report)
    assert text.startswith("\ufeff")
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows[0] == ["期間", "2026-11-02", "2026-11-03"]
    header = rows.index(next(r for r in rows if r and r[0] == "日付"))
    day_rows = {
        r[0]: dict(zip(rows[header], r, strict=True)) for r in rows[header + 1 : header + 4]
    }
    assert day_rows["2026-11-02"]["着信数"] == "5"
    assert day_rows["2026-11-02"]["自動応答完結率(%)"] == "50.0"
    assert day_rows["2026-11-02"]["転送率(%)"] == "25.0"
    total = day_rows["合計"]
    assert total["自動応答完結数"] == "3"
    assert total["転送率(%)"] == "33.3"
    assert total["平均通話時間(秒)"] == "49.2"
    assert total["応答遅延 中央値(ミリ秒)"] == "550"
    assert total["応答遅延 95パーセンタイル(ミリ秒)"] == "955"
    assert total["削減職員時間(時間)"] == "0.30"
    assert ["9時台", "2"] in rows
    assert ["1", "payment.lost-notice", "納付書の再発行", "2", "2"] in rows
    assert ["職員の対応が必要なご用件", "staff_topic", "1", "1"] in rows
    # Excel reads the bytes as UTF-8 because of the BOM.
    assert text.encode("utf-8").startswith(b"\xef\xbb\xbf")


def test_csv_cells_are_never_formulas(db):
    """FAQ titles and reason codes reach the CSV as text, whatever they start with."""
    record(db, *CALLS)
    titles = {
        "payment.lost-notice": '=HYPERLINK("http://evil.example","詳しくはこちら")',
        "payment.account-transfer": "＠全角のアットマーク",
        "juminzei.breakdown": "-2+3",
        "payment.methods": "\t=1+1",
    }
    report = build_report(db, DAY1, DAY2, titles=titles)
    rows = list(csv.reader(io.StringIO(report_csv(report).removeprefix("\ufeff"))))
    cells = [cell for row in rows for cell in row]
    assert not [c for c in cells if c.startswith(FORMULA_LEADS)]
    assert ["1", "payment.lost-notice", "'" + titles["payment.lost-notice"], "2", "2"] in rows
    assert "'＠全角のアットマーク" in cells and "'-2+3" in cells and "'\t=1+1" in cells


def test_empty_period(db):
    r = build_report(db, DAY1, DAY1)
    assert r.totals == Figures(
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, None, None, None, None, 0, 0, 0.0
    )
    rows = list(csv.reader(io.StringIO(report_csv(r).removeprefix("\ufeff"))))
    empty_day = ["合計", "0", "0", "0", "", "0", "", "0", "0", "0", "0", "0", "", "", ""]
    assert [*empty_day, "0", "0", "0.00"] in rows


def test_bad_period_is_refused():
    with pytest.raises(ValueError, match="before it starts"):
        day_bounds(DAY2, DAY1)


def test_day_bounds_are_tokyo_midnight():
    lo, hi = day_bounds(DAY1, DAY1)
    assert lo == dt.datetime(2026, 11, 1, 15, 0, tzinfo=dt.UTC)
    assert hi == dt.datetime(2026, 11, 2, 15, 0, tzinfo=dt.UTC)


def test_percentile_matches_numpy():
    rng = random.Random(5)
    for n in (1, 2, 3, 10, 101):
        values = [rng.uniform(0, 2000) for _ in range(n)]
        for p in (0, 50, 95, 100):
            assert percentile(values, p) == pytest.approx(float(np.percentile(values, p)))
    assert percentile([], 50) is None


# -- callers left waiting, answers cut, fillers, failures ----------------------------------
# Each call alone on its own day, fed through the real recorder as the call core emits it
# (tests/waiting_calls.py); outcome hung_up is how the core recorded such calls before it
# emitted hung_up_waiting, and the reports must read those records the same way.
DAY3 = dt.date(2026, 11, 4)
WAITING_OUTCOMES = ["hung_up_waiting", "hung_up"]


def turns_of(db, call_id: str) -> list[Turn]:
    with db.session() as s:
        return list(s.scalars(select(Turn).where(Turn.call_id == call_id).order_by(Turn.seq)))


def day3_totals(db) -> Figures:
    return build_report(db, DAY3, DAY3).totals


@pytest.mark.parametrize("outcome", WAITING_OUTCOMES)
def test_caller_hanging_up_in_silence_after_a_question_is_not_completed(db, outcome):
    """The answer was decided but never played; the caller hung up after 23 s."""
    record(db, waiting_calls.silent_after_question("w1", jst(DAY3, 10, 0), outcome))
    [turn] = turns_of(db, "w1")
    assert (turn.action, turn.reply_kind, turn.latency_ms) == ("answer", None, None)
    t = day3_totals(db)
    assert (t.calls, t.handled, t.bot_completed) == (1, 1, 0)
    assert t.completion_rate == 0.0
    assert t.hung_up_waiting == 1
    assert t.outcome_counts() == {k: int(k == "hung_up_waiting") for k in OUTCOME_GROUPS}
    # No latency for a reply that never came: counted apart, not dropped.
    assert (t.latency_turns, t.latency_p50_ms, t.turns_without_reply) == (0, None, 1)
    assert t.staff_hours_saved == 0.0


@pytest.mark.parametrize("outcome", WAITING_OUTCOMES)
def test_answer_the_caller_hung_up_on_one_second_in_is_not_completed(db, outcome):
    record(db, waiting_calls.hung_up_one_second_into_answer("w2", jst(DAY3, 10, 0), outcome))
    [turn] = turns_of(db, "w2")
    assert (turn.reply_kind, turn.latency_ms) == ("answer", 2500.0)
    t = day3_totals(db)
    assert (t.handled, t.bot_completed) == (1, 0)
    assert (t.hung_up_waiting, t.unresolved) == (1, 0)
    # The reply did start: its latency counts, and the turn is not one without reply.
    assert (t.latency_turns, t.latency_p50_ms, t.turns_without_reply) == (1, 2500.0, 0)


def test_filler_then_answer_heard_then_goodbye_is_completed(db):
    record(db, waiting_calls.filler_then_answer_then_goodbye("w3", jst(DAY3, 10, 0)))
    turns = turns_of(db, "w3")
    # The filler is not the reply: the answer's own start and latency are recorded.
    assert [(t.action, t.reply_kind, t.latency_ms) for t in turns] == [
        ("answer", "answer", 4000.0),
        ("goodbye", "goodbye", 600.0),
    ]
    assert turns[0].reply_text == waiting_calls.ANSWER
    t = day3_totals(db)
    assert (t.handled, t.bot_completed) == (1, 1)
    assert t.completion_rate == 1.0
    assert (t.hung_up_waiting, t.turns_without_reply) == (0, 0)
    assert (t.latency_turns, t.latency_p50_ms) == (2, pytest.approx(2300.0))


def test_being_told_where_to_ask_about_a_charge_that_is_not_a_tax_is_served(db):
    """Like a redirect, the notice that a charge is not a tax, heard out, serves the caller
    (bot-completed); it names no FAQ entry, so it is no topic."""
    record(db, waiting_calls.told_not_a_tax_then_hung_up("w9", jst(DAY3, 10, 0)))
    [turn] = turns_of(db, "w9")
    assert (turn.action, turn.reply_kind, turn.faq_id) == ("not_a_tax", "not_a_tax", None)
    t = day3_totals(db)
    assert (t.handled, t.bot_completed, t.unresolved, t.hung_up_waiting) == (1, 1, 0, 0)
    assert not build_report(db, DAY3, DAY3).topics


def test_goodbye_before_hanging_up_leaves_nobody_waiting(db):
    """Hanging up right after one's own goodbye, before the bot's: served, not waiting."""
    record(db, waiting_calls.answered_then_said_goodbye_and_hung_up("w4", jst(DAY3, 10, 0)))
    t = day3_totals(db)
    assert (t.handled, t.bot_completed, t.hung_up_waiting, t.turns_without_reply) == (1, 1, 0, 0)


@pytest.mark.parametrize("outcome", WAITING_OUTCOMES)
def test_hanging_up_during_the_bots_goodbye_is_completed(db, outcome):
    record(db, waiting_calls.hung_up_during_the_bots_goodbye("w7", jst(DAY3, 10, 0), outcome))
    t = day3_totals(db)
    assert (t.handled, t.bot_completed) == (1, 1)
    assert (t.hung_up_waiting, t.turns_without_reply) == (0, 0)


@pytest.mark.parametrize("outcome", ["error", "abandoned"])
def test_call_cut_off_by_a_failure_is_failed_not_completed(db, outcome):
    record(db, waiting_calls.cut_off_after_answer("w5", jst(DAY3, 10, 0)))
    assert day3_totals(db).in_progress == 1
    with db.session() as s:  # what closing a call that never ended writes
        s.execute(update(Call).where(Call.id == "w5").values(outcome=outcome))
    t = day3_totals(db)
    assert (t.handled, t.bot_completed) == (1, 0)
    assert (t.failed, t.no_speech) == (1, 0)
    assert OUTCOME_GROUPS["failed"] == "切断（障害）"
    rows = list(csv.reader(io.StringIO(report_csv(build_report(db, DAY3, DAY3))[1:])))
    assert ["切断（障害）", "1"] in rows


def test_question_still_waiting_in_a_call_in_progress_is_not_counted_yet(db):
    events = waiting_calls.silent_after_question("w6", jst(DAY3, 10, 0))[:-1]  # no CallEnded
    record(db, events)
    t = day3_totals(db)
    assert (t.in_progress, t.hung_up_waiting, t.turns_without_reply) == (1, 0, 0)


def test_outcomes_in_the_csv(db):
    start = jst(DAY3, 10, 0)
    minute = dt.timedelta(minutes=1)
    record(
        db,
        waiting_calls.silent_after_question("x1", start),
        waiting_calls.hung_up_one_second_into_answer("x2", start + minute, "hung_up"),
        waiting_calls.filler_then_answer_then_goodbye("x3", start + 2 * minute),
        scripted_call("x4", start + 3 * minute, [], outcome="hung_up", duration_s=5),
    )
    report = build_report(db, DAY3, DAY3)
    rows = list(csv.reader(io.StringIO(report_csv(report).removeprefix("\ufeff"))))
    header = next(r for r in rows if r and r[0] == "日付")
    total = dict(zip(header, next(r for r in rows if r and r[0] == "合計"), strict=True))
    assert (total["着信数"], total["応対数"], total["自動応答完結数"]) == ("4", "3", "1")
    assert total["自動応答完結率(%)"] == "33.3"
    assert total["切断（待ち時間中）数"] == "2"
    assert total["切断（障害）数"] == "0"
    assert total["無音・切断数"] == "1"
    assert (total["応答遅延の対象ターン数"], total["応答前に終了したターン数"]) == ("3", "1")
    section = rows.index(["通話の結果", "件数"])
    assert rows[section + 1 : section + 8] == [
        ["自動応答で完結", "1"],
        ["職員へ転送", "0"],
        ["切断（待ち時間中）", "2"],
        ["途中で終了（未解決）", "0"],
        ["切断（障害）", "0"],
        ["無音・すぐ切断", "1"],
        ["通話中", "0"],
    ]
