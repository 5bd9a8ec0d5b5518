"""The FAQ editor in real headless Chromium (Debian's, via Playwright) against uvicorn.

Log in, edit an answer, listen to it in the bot's voice, publish (the bot re-renders its
answers and switches), ask the "try a question" box and see the new answer, read the diff
and roll back; import an Excel file with one bad row: nothing is imported and the row is
named; a viewer reads but cannot change anything.
Screenshots go to tmp_path and /tmp/screens/ for people to look at.
"""

from __future__ import annotations

import io
import re

from browser import chromium, login, make_services, new_page, running_app, screenshot
from openpyxl import Workbook
from playwright.sync_api import expect

from dashboards import faq_io
from faq.store import Faq
from voicebot.bot import Bot
from voicebot.config import Settings
from voicebot.tts.cache import fixed_utterances

NEW_ANSWER = "証明書の手数料は、このたび1通200円に改定しました。窓口でお支払いください。"


def test_edit_publish_try_listen_and_roll_back(tmp_path):
    """A real bot (pyttsx3 voice, so rendering takes seconds) is switched on publishing."""
    bot = Bot(Settings(tts={"engine": "pyttsx3", "cache_dir": tmp_path / "speech"}))
    published: list[Faq] = []

    async def on_published(faq: Faq) -> None:
        published.append(faq)
        await bot.reload_faq(faq)  # what `voicebot serve` wires: re-render, then switch

    services = make_services(tmp_path, bot=bot, on_faq_published=on_published)
    with running_app(tmp_path, services) as app, chromium() as browser:
        page = new_page(browser)
        login(page, app, "operator", "/faq")
        assert page.url.endswith("/faq")
        assert page.locator("h1").inner_text() == "FAQ編集"
        screenshot(page, tmp_path, "faq-01-list")
        old_answer = bot.understanding.faq["cert.fee"].answer  # with {placeholders}

        page.click("a[href='/faq/entries/cert.fee']")
        page.fill("textarea[name=answer]", NEW_ANSWER)
        page.click("#save-button")
        page.wait_for_selector(".flash-ok")
        assert "下書きに保存しました" in page.locator(".flash").inner_text()
        screenshot(page, tmp_path, "faq-02-saved")

        # "listen": the draft answer in the bot's own voice, as a WAV the page plays
        dialogs: list[str] = []

        def alerted(dialog) -> None:  # the page alerts only when it cannot play
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", alerted)
        with page.expect_response("**/api/faq/entries/cert.fee/audio*") as listened:
            page.click("button.listen")
        assert listened.value.status == 200
        expect(page.locator("button.listen")).to_have_attribute(
            "data-state", re.compile("playing|ended"), timeout=30_000
        )
        assert dialogs == []
        wav = page.request.get(app.url + "/api/faq/entries/cert.fee/audio")
        assert wav.headers["content-type"] == "audio/wav" and wav.body()[:4] == b"RIFF"
        seconds = len(wav.body()) / int.from_bytes(wav.body()[28:32], "little")  # byte rate
        assert seconds > 3  # the whole new answer, not a clip
        page.remove_listener("dialog", alerted)
        assert bot.speech_cache.path(NEW_ANSWER).exists()  # rendered once, kept

        page.goto(app.url + "/faq")
        assert "未公開の変更 1件" in page.locator(".badge-changed").first.inner_text()
        page.fill("input[name=comment]", "証明書の手数料を改定")
        page.click("#publish-button")
        page.wait_for_selector(".flash-ok")
        assert "版2として公開しました" in page.locator(".flash").inner_text()
        assert len(published) == 1 and published[0]["cert.fee"].answer == NEW_ANSWER
        # the bot speaks the new version, and every answer of it is in the speech cache
        assert bot.understanding.faq.answer_text("cert.fee") == NEW_ANSWER
        assert all(bot.speech_cache.path(t).exists() for t in fixed_utterances(published[0]))

        page.fill("#try-text", "証明書の手数料っていくらかかりますか")
        page.select_option("#try-target", "published")
        page.click("#try-form button[type=submit]")
        first = page.locator("#try-result .candidates li").first
        first.wait_for()
        assert first.get_attribute("data-faq-id") == "cert.fee"
        assert NEW_ANSWER in first.inner_text()
        assert page.locator("#try-result .candidates li").count() > 1  # candidates, ranked
        screenshot(page, tmp_path, "faq-03-try")

        page.goto(app.url + "/faq/versions")
        assert "版2" in page.locator("tbody tr").first.inner_text()
        page.click("a[href='/faq/diff?from=1&to=2']")
        assert NEW_ANSWER in page.locator(".diff-new").first.inner_text()
        assert old_answer in page.locator(".diff-old").first.inner_text()
        screenshot(page, tmp_path, "faq-04-diff")

        # roll back to version 1: published again as version 3, and the bot follows
        page.goto(app.url + "/faq/versions")
        row = page.locator("tbody tr", has_text="版1")
        page.once("dialog", lambda d: d.accept())  # "この版に戻して公開します。よろしいですか？"
        row.locator("button", has_text="この版に戻す").click()
        page.wait_for_selector(".flash-ok")
        assert "版1の内容を、版3として公開しました" in page.locator(".flash").inner_text()
        screenshot(page, tmp_path, "faq-04b-rolled-back")
        assert len(published) == 2
        assert bot.understanding.faq["cert.fee"].answer == old_answer
        assert page.outside_requests == []  # nothing was loaded from the internet

        # the administrator's audit log has the login and every change, newest first
        admin = new_page(browser)
        login(admin, app, "admin", "/audit")
        rows = admin.locator("#audit-log > tbody > tr")
        actions = [rows.nth(i).locator("> td").nth(2).inner_text() for i in range(rows.count())]
        assert actions[:5] == ["ログイン", "FAQ差し戻し", "FAQ公開", "FAQ編集", "ログイン"]
        edit = rows.nth(3)
        assert edit.locator("> td").nth(1).inner_text() == "test-operator"
        assert edit.locator("> td").nth(3).inner_text() == "cert.fee"
        edit.locator("summary").click()
        fields = edit.locator(".audit-fields tbody tr th").all_inner_texts()
        # the text and the entry's revision counter (and its date, unless edited on the day
        # the shipped FAQ was last updated)
        assert [f for f in fields if f != "更新日"] == ["回答", "改訂番号"]
        changed = edit.locator(".audit-fields tbody tr", has_text="回答")
        assert changed.locator(".diff-old").inner_text() == old_answer
        assert changed.locator(".diff-new").inner_text() == NEW_ANSWER
        screenshot(admin, tmp_path, "audit")
        admin.goto(app.url + "/users")
        listed = admin.locator("tbody tr td:first-child").all_inner_texts()
        assert set(listed) == {f"test-{role}" for role in ("admin", "operator", "staff", "viewer")}
        screenshot(admin, tmp_path, "users")


def test_excel_import_with_a_bad_row_imports_nothing(tmp_path):
    services = make_services(tmp_path)
    with running_app(tmp_path, services) as app, chromium() as browser:
        store = app.app.state.faq_versions
        before = store.draft()
        book = Workbook()
        sheet = book.active
        # as exported: the draft revision on every row, so the import knows its base
        columns = [*faq_io.COLUMNS, faq_io.BASE_REVISION]
        sheet.append([faq_io.header_text(n, label) for n, label in columns])
        for entry in before.entries:
            sheet.append([*faq_io._row_values(entry), str(before.revision)])
        sheet.cell(row=2, column=7).value = "回答を書き換えました。"  # a good change...
        sheet.cell(row=5, column=4).value = "よく分からない"  # ...and one bad action, row 5
        upload = tmp_path / "faq-bad.xlsx"
        buf = io.BytesIO()
        book.save(buf)
        upload.write_bytes(buf.getvalue())

        page = new_page(browser)
        login(page, app, "operator", "/faq/import")
        page.set_input_files("input[name=file]", str(upload))
        page.click("form[action='/faq/import'] button[type=submit]")
        errors = page.locator("#import-errors li")
        errors.first.wait_for()
        assert errors.count() == 1
        assert errors.first.inner_text().startswith("5行目（対応）")
        assert "取り込みませんでした" in page.locator(".flash-error").first.inner_text()
        screenshot(page, tmp_path, "faq-05-import-error")
        after = store.draft()
        assert after.revision == before.revision and after.entries == before.entries

        # fixed file: imported into the draft, not yet published
        sheet.cell(row=5, column=4).value = "回答する"
        buf = io.BytesIO()
        book.save(buf)
        upload.write_bytes(buf.getvalue())
        page.set_input_files("input[name=file]", str(upload))
        page.click("form[action='/faq/import'] button[type=submit]")
        page.wait_for_selector(".flash-ok")
        assert "下書きに取り込みました" in page.locator(".flash").inner_text()
        screenshot(page, tmp_path, "faq-06-imported")
        assert store.draft().changes[0]["fields"][0]["after"] == "回答を書き換えました。"
        assert store.published_number() == 1


def test_login_page_and_viewer_cannot_edit(tmp_path):
    with running_app(tmp_path) as app, chromium() as browser:
        page = new_page(browser)
        page.goto(app.url + "/faq")
        assert "/login?next=" in page.url
        screenshot(page, tmp_path, "login")
        login(page, app, "viewer", "/faq")
        assert page.locator("a[href='/faq/new']").count() == 0
        assert page.locator("#publish-button").count() == 0
        nav = page.locator(".main-nav").inner_text()
        for label in ("FAQ編集", "未回答の質問", "ライブモニター", "レポート"):
            assert label in nav
        # pages a viewer may not open are not offered
        for label in ("担当者コンソール", "テスト電話", "ユーザー管理"):
            assert label not in nav
        page.click("a[href='/faq/entries/cert.fee']")
        assert page.locator("#save-button").count() == 0
        # without a running bot, "listen" explains politely instead of failing silently
        messages: list[str] = []
        page.once("dialog", lambda d: (messages.append(d.message), d.dismiss()))
        page.click("button.listen")
        expect(page.locator("button.listen")).to_be_enabled()
        assert messages and "再生できません" in messages[0]
        page.goto(app.url + "/users")
        assert "権限がありません" in page.locator("body").inner_text()
        page.click("text=ログアウト")
        page.wait_for_url("**/login")
