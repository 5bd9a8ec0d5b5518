"""The reports page in a real browser: figures, SVG charts, CSV export, roles, periods.

Calls are written through the real CallRecorder into a temporary SQLite database and
the page is served by the real app (uvicorn) and read by Debian's Chromium.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import httpx
import pytest
import waiting_calls
from browser import chromium, login, new_page, running_app, screenshot
from pages_support import SeedTurn, call_events, record

from dashboards.db import Database
from dashboards.reports import TOKYO
from dashboards.routes.reports import PeriodError, parse_period

DAY = dt.date(2026, 11, 20)  # a Friday
PREVIOUS_DAY = DAY - dt.timedelta(days=1)
WAITING_DAY = DAY + dt.timedelta(days=1)


def at(day: dt.date, hour: int, minute: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), TOKYO)


def seed(db: Database) -> None:
    """Five calls on DAY (9時 ×2, 10時, 14時 ×2) and one the day before."""
    fee = SeedTurn("住民票の手数料はいくらですか", "cert.fee", 0.92, "answer", 500)
    lost = SeedTurn("納付書をなくしました", "payment.lost-notice", 0.88, "answer", 700)
    staff = SeedTurn("差し押さえの通知が来ました", "general.seizure", 0.9, "transfer", 600)
    record(
        db,
        call_events("c1", at(DAY, 9, 5), [fee], "completed", 60),
        call_events("c2", at(DAY, 9, 40), [lost], "completed", 75),
        call_events(
            "c3",
            at(DAY, 10, 15),
            [staff],
            "transferred",
            90,
            transfer_reason="staff_topic",
            transfer_answered=True,
        ),
        call_events("c4", at(DAY, 14, 30), [], "hung_up", 6),
        call_events("c5", at(DAY, 14, 50), [lost], "completed", 45),
        call_events("c0", at(PREVIOUS_DAY, 16, 0), [fee], "completed", 50),
        # The day after: a caller left waiting in silence, one who hung up 1 s into the
        # answer (recorded as plain hung_up), one who heard the answer after a filler.
        waiting_calls.silent_after_question("w1", at(WAITING_DAY, 9, 0)),
        waiting_calls.hung_up_one_second_into_answer("w2", at(WAITING_DAY, 9, 30), "hung_up"),
        waiting_calls.filler_then_answer_then_goodbye("w3", at(WAITING_DAY, 10, 0)),
    )


def bars(found: list[dict]) -> dict[str, float]:
    return {b["label"]: float(b["value"]) for b in found}


def chart_bars(page, chart_id: str) -> list[dict]:
    """The bars of a chart as drawn: label, value and the rectangle's size."""
    return page.eval_on_selector_all(
        f"#{chart_id} g.bar, #{chart_id} g.segment",
        """els => els.map(e => {
            const box = e.querySelector('rect').getBBox();
            return {label: e.dataset.label, value: e.dataset.value, h: box.height, w: box.width};
        })""",
    )


def outcome_table(page) -> dict[str, list[str]]:
    """The outcome table as shown: label → [件数, 着信数に占める割合, 応対数に占める割合]."""
    return page.eval_on_selector_all(
        "#outcome-table tbody tr",
        """rows => Object.fromEntries(rows.map(r => [
            r.querySelector('th').innerText.trim(),
            [...r.querySelectorAll('td')].map(td => td.innerText.trim()),
        ]))""",
    )


def test_report_page_figures_charts_and_csv(tmp_path) -> None:
    q = f"from={DAY.isoformat()}&to={DAY.isoformat()}"
    with running_app(tmp_path) as app, chromium() as browser:
        seed(app.services.db)
        page = new_page(browser)
        login(page, app, "viewer", "/reports")
        response = page.goto(f"{app.url}/reports?{q}")
        assert response.status == 200
        assert page.title() == "レポート｜税務ボイスボット"
        kpi = {
            key: page.inner_text(f"#kpi-{key} .kpi-value").strip()
            for key in (
                "calls",
                "completion",
                "transfer",
                "handling",
                "latency",
                "unreplied",
                "saved",
            )
        }
        assert kpi["calls"] == "5件"
        # 4 handled (c4 hung up in silence), 3 completed by the bot, 1 transferred.
        assert kpi["completion"] == "75.0%"
        assert kpi["transfer"] == "25.0%"
        assert kpi["handling"] == "1分08秒"  # (60 + 75 + 90 + 45) / 4 = 67.5 s
        assert kpi["latency"] == "0.65秒 ／ 0.70秒"  # 500, 600, 700, 700 ms
        assert kpi["saved"] == "18分"  # 3 calls × 6 minutes
        assert kpi["unreplied"] == "0回"
        table = outcome_table(page)
        assert table["自動応答で完結"] == ["3件", "60.0%", "75.0%"]
        assert table["切断（待ち時間中）"] == ["0件", "0.0%", "0.0%"]
        assert table["無音・すぐ切断"] == ["1件", "20.0%", "—"]
        assert "職員の対応が必要なご用件" in page.inner_text("#kpi-transfer .kpi-note")

        hours = chart_bars(page, "chart-hours")
        by_hour = bars(hours)
        assert (by_hour["9時"], by_hour["10時"], by_hour["14時"]) == (2, 1, 2)
        assert all(v == 0 for k, v in by_hour.items() if k not in ("9時", "10時", "14時"))
        height = {b["label"]: b["h"] for b in hours}
        assert height["9時"] == pytest.approx(2 * height["10時"], rel=0.01)
        assert height["10時"] > 0 and height["11時"] == 0
        topics = bars(chart_bars(page, "chart-topics"))
        # FAQ titles (not ids), the most asked first.
        assert topics == {"納付書の再発行": 2, "差押えの通知": 1, "証明書の手数料": 1}
        assert next(iter(topics)) == "納付書の再発行"
        outcomes = bars(chart_bars(page, "chart-outcomes"))
        assert outcomes == {"自動応答で完結": 3, "職員へ転送": 1, "無音・すぐ切断": 1}
        assert page.text_content("#chart-hours > title") == "時間帯別の着信数"
        assert page.outside_requests == []
        screenshot(page, tmp_path, "reports-day")

        with page.expect_download() as info:
            page.click("#csv-export")
        download = info.value
        assert download.suggested_filename == f"voicebot-report-{DAY}_{DAY}.csv"
        path = tmp_path / "report.csv"
        download.save_as(str(path))
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))
        day_row = next(r for r in rows if r and r[0] == DAY.isoformat())
        assert day_row[1:5] == ["5", "4", "3", "75.0"]
        assert ["9時台", "2"] in rows and ["14時台", "2"] in rows and ["11時台", "0"] in rows

        # Two days: the day before is counted and drawn as its own bar.
        page.goto(f"{app.url}/reports?from={PREVIOUS_DAY}&to={DAY}")
        assert page.inner_text("#kpi-calls .kpi-value").strip() == "6件"
        days = bars(chart_bars(page, "chart-days"))
        assert days == {"11/19（木）": 1, "11/20（金）": 5}
        screenshot(page, tmp_path, "reports-two-days")

        # A day with callers left waiting: their own outcome, in the table, chart and CSV.
        page.goto(f"{app.url}/reports?from={WAITING_DAY}&to={WAITING_DAY}")
        assert page.inner_text("#kpi-completion .kpi-value").strip() == "33.3%"
        assert "切断（待ち時間中） 2件" in page.inner_text("#kpi-completion .kpi-note")
        assert page.inner_text("#kpi-unreplied .kpi-value").strip() == "1回"
        # 600, 2500 and 4000 ms: the answer after the filler counts, not the filler.
        assert page.inner_text("#kpi-latency .kpi-value").strip() == "2.50秒 ／ 3.85秒"
        assert outcome_table(page)["切断（待ち時間中）"] == ["2件", "66.7%", "66.7%"]
        assert bars(chart_bars(page, "chart-outcomes")) == {
            "自動応答で完結": 1,
            "切断（待ち時間中）": 2,
        }
        assert "切断（障害）" in page.text_content("#chart-outcomes")  # shown at 0 too
        screenshot(page, tmp_path, "reports-waiting")
        csv_text = page.request.get(
            f"{app.url}/api/reports/export.csv?from={WAITING_DAY}&to={WAITING_DAY}"
        ).text()
        waiting_rows = list(csv.reader(io.StringIO(csv_text.removeprefix("\ufeff"))))
        assert ["切断（待ち時間中）", "2"] in waiting_rows

        # The presets link to real periods; today has no calls here.
        page.click("text=今日")
        assert page.inner_text("#kpi-calls .kpi-value").strip() == "0件"
        assert "この期間のデータはありません" in page.text_content("#chart-hours")

        # A bad date is explained on the page, not a crash.
        response = page.goto(f"{app.url}/reports?from=2026-13-01&to=2026-11-20")
        assert response.status == 400
        assert "年-月-日" in page.inner_text(".form-error")

        summary = page.request.get(f"{app.url}/api/reports/summary?{q}")
        assert summary.status == 200
        data = summary.json()
        assert (data["totals"]["calls"], data["totals"]["bot_completed"]) == (5, 3)
        assert data["hours"][9] == {"hour": 9, "calls": 2}
        bad = page.request.get(f"{app.url}/api/reports/summary?from=2026-11-21&to=2026-11-20")
        assert bad.status == 400 and "終了日" in bad.json()["detail"]

        anonymous = httpx.get(f"{app.url}/api/reports/summary?{q}")
        assert anonymous.status_code == 401
        staff = new_page(browser)
        login(staff, app, "staff")
        assert staff.request.get(f"{app.url}/api/reports/export.csv?{q}").status == 403


def test_periods() -> None:
    today = dt.date(2026, 11, 24)
    assert parse_period(None, None, None, today) == parse_period(None, None, "today", today)
    week = parse_period(None, None, "7d", today)
    assert (week.start, week.end, week.days) == (dt.date(2026, 11, 18), today, 7)
    month = parse_period(None, None, "month", today)
    assert (month.start, month.end) == (dt.date(2026, 11, 1), today)
    # Explicit dates matching a preset light that preset up.
    assert parse_period("2026-11-18", "2026-11-24", None, today).preset == "7d"
    assert parse_period("2026-11-03", None, None, today).days == 1
    for bad in (("2026-11-25", "2026-11-24"), ("yesterday", None), ("2020-01-01", "2026-01-01")):
        with pytest.raises(PeriodError):
            parse_period(*bad, None, today)
    with pytest.raises(PeriodError):
        parse_period(None, None, "decade", today)
