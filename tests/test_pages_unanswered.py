"""The unanswered-questions page in a real browser: groups, one-click FAQ draft changes.

Low-confidence turns are written through the real CallRecorder; the page's actions go
through the real FAQ draft (``dashboards.faq_versions``), checked afterwards through
that module's own API.
"""

from __future__ import annotations

import datetime as dt

from browser import chromium, login, new_page, running_app, screenshot
from pages_support import SeedTurn, call_events, record

from dashboards.faq_versions import FaqVersions
from dashboards.reports import TOKYO


def seed(db) -> None:
    """Two callers lost their payment slip (once misrecognised), two ask about furusato."""
    start = dt.datetime.now(TOKYO) - dt.timedelta(hours=2)
    lost = SeedTurn("納付書をなくしました", "payment.lost-notice", 0.35, "reprompt", 600)
    misheard = SeedTurn("農夫書をなくしました", "payment.lost-notice", 0.3, "reprompt", 600)
    answered = SeedTurn("納付書の再発行をお願いします", "payment.lost-notice", 0.93, "answer")
    furusato = SeedTurn("ふるさと納税の上限額はいくらですか", "juminzei.furusato", 0.5, "confirm")
    record(
        db,
        call_events("u1", start, [lost, answered], "completed", 60),
        call_events("u2", start + dt.timedelta(minutes=5), [lost], "hung_up", 30),
        call_events("u3", start + dt.timedelta(minutes=9), [misheard], "hung_up", 25),
        call_events("u4", start + dt.timedelta(minutes=20), [furusato], "hung_up", 30),
        call_events("u5", start + dt.timedelta(minutes=30), [furusato], "hung_up", 30),
    )


def group_texts(page) -> list[tuple[str, str]]:
    groups = page.locator("article.uq-group")
    return [
        (groups.nth(i).locator("h2").inner_text(), groups.nth(i).locator(".uq-count").inner_text())
        for i in range(groups.count())
    ]


def test_unanswered_groups_and_actions_change_the_faq_draft(tmp_path) -> None:
    with running_app(tmp_path) as app, chromium() as browser:
        db = app.services.db
        seed(db)
        store = FaqVersions.for_services(app.services)
        before = store.draft().get("payment.lost-notice")["questions"]
        assert "納付書をなくしました" not in before

        page = new_page(browser)
        login(page, app, "operator", "/unanswered")
        assert page.goto(f"{app.url}/unanswered").status == 200
        groups = group_texts(page)
        assert groups[0] == ("「納付書をなくしました」", "3件")  # 納付書 and 農夫書 together
        assert ("「ふるさと納税の上限額はいくらですか」", "2件") in groups
        first = page.locator("article.uq-group").first
        examples = first.locator(".example-text").all_inner_texts()
        assert set(examples) == {"納付書をなくしました", "農夫書をなくしました"}
        # The best candidate is preselected: one click adds the example to it.
        assert first.locator("select[name=faq_id]").input_value() == "payment.lost-notice"
        assert "納付書の再発行" in first.locator(".uq-candidates").inner_text()
        assert page.outside_requests == []
        screenshot(page, tmp_path, "unanswered-list")

        with page.expect_navigation():
            first.get_by_role("button", name="質問例として追加").click()
        assert "「納付書の再発行」の質問例に追加しました（下書き）" in page.inner_text("#notice")
        after = store.draft().get("payment.lost-notice")["questions"]
        assert after == [*before, "納付書をなくしました"]
        # Published FAQ unchanged until an operator publishes the draft.
        published = {e["id"]: e for e in store.entries_of("published")}
        assert "納付書をなくしました" not in published["payment.lost-notice"]["questions"]
        # The handled group left the list; the other one is still there.
        groups = group_texts(page)
        assert [g for g in groups if "納付書" in g[0]] == []
        assert ("「ふるさと納税の上限額はいくらですか」", "2件") in groups

        # A new entry without an answer is refused with the reason, keeping what was typed.
        furusato = page.locator("article.uq-group", has_text="ふるさと納税")
        furusato.locator("summary").click()
        furusato.locator("input[name=title]").fill("ふるさと納税の控除の上限")
        # Past the browser's own check, the server must refuse an empty answer itself.
        furusato.locator("textarea[name=answer]").evaluate("t => t.removeAttribute('required')")
        with page.expect_navigation():
            furusato.get_by_role("button", name="新しい項目を作成").click()
        assert "回答を入力してください" in page.inner_text("#notice")
        assert furusato.locator("input[name=title]").input_value() == "ふるさと納税の控除の上限"
        furusato.locator("textarea[name=answer]").fill(
            "ふるさと納税の控除の上限は、収入や家族の状況によって異なります。"
            "総務省のホームページで目安を確認できます。",
        )
        with page.expect_navigation():
            furusato.get_by_role("button", name="新しい項目を作成").click()
        notice = page.inner_text("#notice")
        assert "新しい項目「ふるさと納税の控除の上限」を下書きに作成しました" in notice
        created = [e for e in store.draft().entries if e["title"] == "ふるさと納税の控除の上限"]
        assert len(created) == 1
        assert created[0]["questions"] == ["ふるさと納税の上限額はいくらですか"]
        assert page.locator("article.uq-group").count() == 0
        assert "未回答の質問はありません" in page.inner_text(".page-unanswered")
        screenshot(page, tmp_path, "unanswered-done")

        # The JSON list agrees, and viewers (read-only) may not see or change it.
        api = page.request.get(f"{app.url}/api/unanswered")
        assert api.status == 200 and api.json()["groups"] == []
        viewer = new_page(browser)
        login(viewer, app, "viewer")
        assert viewer.goto(f"{app.url}/unanswered").status == 403
        assert viewer.request.get(f"{app.url}/api/unanswered").status == 403
