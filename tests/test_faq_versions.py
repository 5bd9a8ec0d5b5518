"""FAQ draft, publishing, history, diff and rollback on a real SQLite database."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from dashboards import audit
from dashboards.db import Database
from dashboards.faq_versions import (
    FaqConflict,
    FaqValidationError,
    FaqVersions,
    add_example_question,
    create_entry_draft,
    diff_snapshots,
    entry_hash,
)
from faq.store import load_faq


@pytest.fixture
def versions(tmp_path) -> FaqVersions:
    db = Database(f"sqlite:///{tmp_path / 'faq.db'}")
    db.create_all()
    store = FaqVersions(db, data_dir=tmp_path / "data")
    store.ensure_initial_version()
    return store


def test_shipped_faq_is_version_one_and_written_out(versions, tmp_path):
    shipped = load_faq()
    v1 = versions.version(1)
    assert v1.kind == "initial" and v1.entry_count == len(shipped)
    assert [e["id"] for e in v1.entries()] == [e.id for e in shipped]
    assert versions.draft().changes == []
    written = load_faq(tmp_path / "data" / "faq" / "current")
    assert [e.id for e in written] == [e.id for e in shipped]
    assert written.synonyms == shipped.synonyms
    versions.ensure_initial_version()  # idempotent
    assert len(versions.versions()) == 1


def test_edit_is_validated_by_the_store_rules_in_japanese(versions):
    entry = versions.draft().get("payment.lost-notice")
    bad = {**entry, "answer": "{no_such_fact}をご確認ください。", "questions": []}
    with pytest.raises(FaqValidationError) as exc:
        versions.save_entry(bad, "op", entry_id=entry["id"])
    by_field = {p.field: p.message for p in exc.value.problems}
    assert "1つ以上" in by_field["questions"]
    too_many = {**entry, "answer": "一文。二文。三文。四文。五文。"}
    with pytest.raises(FaqValidationError) as exc:
        versions.save_entry(too_many, "op", entry_id=entry["id"])
    assert "4文以内" in exc.value.problems[0].message
    with pytest.raises(FaqValidationError) as exc:
        versions.save_entry({**entry, "id": "Bad ID"}, "op")
    assert exc.value.problems[0].field == "id"
    assert versions.draft().changes == []  # nothing was changed by the failures


def test_publish_diff_and_rollback(versions, tmp_path):
    entry = versions.draft().get("payment.lost-notice")
    new_answer = "納付書をなくされた場合は、再発行いたします。{tax_section}までお電話ください。"
    saved, warnings = versions.save_entry(
        {**entry, "answer": new_answer}, "op", entry_id=entry["id"], expected_hash=entry_hash(entry)
    )
    assert saved["revision"] == entry["revision"] + 1 and warnings == []
    # a second editor working from the old copy is stopped, not silently overwritten
    with pytest.raises(FaqConflict):
        versions.save_entry(
            {**entry, "title": "別の題名"},
            "op2",
            entry_id=entry["id"],
            expected_hash=entry_hash(entry),
        )
    changes = versions.draft().changes
    assert changes == [
        {
            "id": "payment.lost-notice",
            "title": entry["title"],
            "change": "changed",
            "fields": [
                {"field": "answer", "label": "回答", "before": entry["answer"], "after": new_answer}
            ],
        }
    ]
    summary, faq = versions.publish("op", "再発行の案内を変更")
    assert summary["number"] == 2 and summary["kind"] == "publish"
    assert faq["payment.lost-notice"].answer == new_answer
    on_disk = load_faq(tmp_path / "data" / "faq" / "current")
    assert on_disk["payment.lost-notice"].answer == new_answer
    with pytest.raises(FaqConflict):
        versions.publish("op")  # nothing left to publish

    diff = diff_snapshots(versions.version(1).entries(), versions.version(2).entries())
    assert [(c["id"], [f["field"] for f in c["fields"]]) for c in diff] == [
        ("payment.lost-notice", ["answer"])
    ]

    summary, faq = versions.rollback(1, "admin")
    assert summary["number"] == 3 and summary["kind"] == "rollback" and summary["based_on"] == 1
    assert faq["payment.lost-notice"].answer == entry["answer"]
    assert versions.version(2).entries() != versions.version(3).entries()  # history kept
    assert versions.draft().base_version == 3 and versions.draft().changes == []
    assert (
        load_faq(tmp_path / "data" / "faq" / "current")["payment.lost-notice"].answer
        == (entry["answer"])
    )

    actions = [r["action"] for r in audit.query(versions.db, limit=20)[0]]
    assert actions[:3] == ["faq_rollback", "faq_publish", "faq_update"]
    update_row = audit.query(versions.db, action="faq_update")[0][0]
    assert update_row["username"] == "op" and update_row["before"]["answer"] == entry["answer"]
    assert update_row["after"]["answer"] == new_answer


def test_create_delete_and_helpers_for_unanswered_page(versions):
    created = create_entry_draft(
        versions.db,
        title="住民税の口座振替の変更",
        questions=["引き落とし口座を変えたい", "口座を変更したいです"],
        answer="口座の変更は、金融機関の窓口で手続きできます。",
        category="納付",
        user="op",
    )
    assert created["id"].startswith("custom.")
    assert versions.draft().get(created["id"])["revision"] == 1

    updated = add_example_question(versions.db, created["id"], "  口座を 変えたい  ", "op")
    assert updated["questions"][-1] == "口座を 変えたい"
    again = add_example_question(versions.db, created["id"], "口座を 変えたい", "op")
    assert again["questions"].count("口座を 変えたい") == 1

    with pytest.raises(FaqValidationError) as exc:
        create_entry_draft(
            versions.db, title="", questions=["x"], answer="回答です。", category="納付", user="op"
        )
    assert exc.value.problems[0].field == "title"

    versions.delete_entry(created["id"], "op")
    assert versions.draft().get(created["id"]) is None
    assert versions.draft().changes == []


def test_try_question_on_draft_and_published(versions):
    entry = versions.draft().get("cert.fee")
    versions.save_entry(
        {**entry, "answer": "証明書は無料でお出ししています。"}, "op", entry_id="cert.fee"
    )
    draft = versions.try_question("証明書の手数料はいくらですか", "draft")
    published = versions.try_question("証明書の手数料はいくらですか", "published")
    assert draft["candidates"][0]["faq_id"] == "cert.fee"
    assert draft["candidates"][0]["answer"] == "証明書は無料でお出ししています。"
    assert published["candidates"][0]["answer"] != draft["candidates"][0]["answer"]
    assert published["decision"]["action"] in ("answer", "confirm")
    assert draft["decision"]["action"] == "answer"
    assert draft["decision"]["say"].startswith("証明書は無料でお出ししています。")  # as edited


def test_try_question_says_what_a_caller_hears(versions):
    """The words shown are the dialogue's for a caller asking this first, not the policy's:
    a redirect offers staff in office hours, a staff topic outside them gives the hours."""
    from voicebot import prompts
    from voicebot.dialogue import Dialogue

    jst = ZoneInfo("Asia/Tokyo")
    tuesday, sunday = (dt.datetime(2026, 11, d, 10, 0, tzinfo=jst) for d in (24, 22))
    cases = {
        "所得税の確定申告について聞きたいです": tuesday,
        "分割で払いたいんですが相談できますか": sunday,
        "証明書の郵送請求と払いすぎた税金の還付": tuesday,
        "担当者と話したいです": tuesday,
    }
    tried = {}
    for text, at in cases.items():
        dialogue = Dialogue(versions.understanding("draft"), now=lambda at=at: at)
        dialogue.start()
        heard = dialogue.on_utterance(text)
        tried[text] = versions.try_question(text, "draft", now=lambda at=at: at)["decision"]
        assert tried[text]["say"] == heard.text, text
        assert (tried[text]["kind"], tried[text]["next"]) == (heard.kind, heard.next.value), text
    redirect, staff, choice, person = tried.values()
    assert redirect["kind"] == "redirect" and redirect["say"].endswith(prompts.OFFER_TRANSFER)
    assert staff["action"] == "transfer" and staff["kind"] == "out_of_hours"
    assert choice["kind"] == "choose" and choice["say"].endswith(prompts.CHOICE_HOW)
    assert person["say"] == prompts.TRANSFER and person["next"] == "transfer"
