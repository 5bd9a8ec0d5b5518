"""The voicebot command as a user runs it (a real subprocess)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from conftest import DATA

from voicebot import prompts
from voicebot.dialogue import Dialogue

VOICEBOT = [sys.executable, "-m", "commands.cli"]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*VOICEBOT, *args], capture_output=True, text=True, timeout=60, env=env)


def test_ask_json_has_the_documented_fields(faq):
    out = run("ask", "住民税の納付書をなくしました", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["text"] == "住民税の納付書をなくしました"
    assert result["faq_id"] == "payment.lost-notice"
    assert result["action"] == "answer"
    assert 0.7 <= result["score"] <= 1.0
    answer = faq.answer_text("payment.lost-notice")
    assert result["parts"] == [answer, prompts.ANYTHING_ELSE]
    assert result["answer"] == answer + prompts.ANYTHING_ELSE  # what the caller hears
    assert (result["kind"], result["next"]) == ("answer", "listen")
    assert len(result["candidates"]) == 3
    assert result["candidates"][0]["faq_id"] == "payment.lost-notice"


# A Tuesday morning and a Sunday, in the hotline's time zone.
OPEN, CLOSED = "2026-11-24T10:00", "2026-11-22T10:00"


def test_ask_says_what_a_caller_hears(understanding):
    """The words are the dialogue's for a caller asking this first: a redirect offers staff
    in office hours, a staff topic outside them gives the hours, a choice names both."""
    cases = {
        "所得税の確定申告について聞きたいです": OPEN,
        "分割で払いたいんですが相談できますか": CLOSED,
        "証明書の郵送請求と払いすぎた税金の還付": OPEN,
    }
    results = {}
    for text, at in cases.items():
        when = dt.datetime.fromisoformat(at).replace(tzinfo=ZoneInfo("Asia/Tokyo"))
        dialogue = Dialogue(understanding, now=lambda when=when: when)
        dialogue.start()
        heard = dialogue.on_utterance(text)
        result = results[text] = json.loads(run("ask", text, "--json", "--at", at).stdout)
        assert result["answer"] == heard.text and result["parts"] == list(heard.parts), text
        assert (result["kind"], result["next"]) == (heard.kind, heard.next.value), text
        assert result["action"] == heard.decision.action.value, text
    redirect, staff, choice = results.values()
    assert redirect["kind"] == "redirect" and redirect["answer"].endswith(prompts.OFFER_TRANSFER)
    assert staff["action"] == "transfer" and staff["kind"] == "out_of_hours"
    assert choice["kind"] == "choose" and choice["parts"][-1] == prompts.CHOICE_HOW
    human = run("ask", "所得税の確定申告について聞きたいです", "--at", OPEN).stdout
    assert f"say    : {redirect['answer']}\n" in human
    assert "reply  : redirect -> listen" in human


def test_ask_transfer_and_control_actions():
    cases = {
        "分割で払いたいんですが相談できますか": ("transfer", "payment.cannot-pay"),
        "オペレーターにつないでください": ("transfer", None),
        "以上です、ありがとうございました": ("goodbye", None),
        "所得税の確定申告について聞きたいです": ("redirect", "redirect.national-tax"),
        "ゴミの収集日を教えてください": ("reprompt", None),
    }
    for text, (action, faq_id) in cases.items():
        result = json.loads(run("ask", text, "--json").stdout)
        assert (result["action"], result["faq_id"]) == (action, faq_id), (text, result)


def test_thresholds_from_environment(tmp_path):
    import os

    env = {
        **os.environ,
        "VOICEBOT_THRESHOLDS__ANSWER": "0.999",
        "VOICEBOT_THRESHOLDS__CONFIRM": "0.1",
    }
    result = json.loads(run("ask", "口座振替にしたいです", "--json", env=env).stdout)
    assert result["action"] == "confirm"
    assert "口座振替" in result["answer"] and "よろしいでしょうか" in result["answer"]


def test_turn_taking_from_environment(monkeypatch):
    """A city whose callers pause longer can lengthen the hold and the merge window."""
    from voicebot.bot import Bot
    from voicebot.config import Settings

    monkeypatch.setenv("VOICEBOT_CALL__HOLD_INCOMPLETE_MS", "1200")
    monkeypatch.setenv("VOICEBOT_CALL__MERGE_WINDOW_MS", "1800")
    monkeypatch.setenv("VOICEBOT_CALL__SPECULATION_DECODE_AFTER_MS", "260")
    config = Bot(Settings()).call_config()
    assert (config.hold_incomplete_ms, config.merge_window_ms) == (1200, 1800)
    assert config.speculation_decode_after_ms == 260


def test_thresholds_from_config_file(tmp_path):
    cfg = tmp_path / "voicebot.toml"
    cfg.write_text(
        "[thresholds]\nanswer = 0.99999\nconfirm = 0.99998\nconfirm_lead = 0.99998\n",
        encoding="utf-8",
    )
    result = json.loads(run("--config", str(cfg), "ask", "口座振替にしたいです", "--json").stdout)
    assert result["action"] == "reprompt"


def test_bad_config_is_a_clear_error(tmp_path):
    cfg = tmp_path / "voicebot.toml"
    cfg.write_text("[thresholds]\nanswer = 0.3\nconfirm = 0.6\n", encoding="utf-8")
    out = run("--config", str(cfg), "ask", "口座振替")
    assert out.returncode == 2
    assert "confirm must not exceed" in out.stderr


def test_eval_prints_accuracy_per_topic_and_confusions(tmp_path):
    tsv = tmp_path / "few.tsv"
    tsv.write_text(
        "utterance\texpected\n口座振替にしたい\tpayment.account-transfer\n"
        "パスポートを作りたい\tunknown\n納付書をなくしました\tpayment.refund\n",
        encoding="utf-8",
    )
    out = run("eval", str(tsv))
    assert out.returncode == 0, out.stderr
    assert "accuracy: 66.7% (2/3)" in out.stdout
    assert "payment.refund -> payment.lost-notice" in out.stdout
    report = json.loads(run("eval", str(tsv), "--json").stdout)
    assert report["per_label"]["payment.account-transfer"]["accuracy"] == 1.0
    assert report["confusions"] == [
        {"expected": "payment.refund", "got": "payment.lost-notice", "count": 1}
    ]
    # The lost-notice answer spoken for a refund question is a confident wrong answer;
    # the account-transfer question is the one answerable row answered at once.
    assert report["wrong_answers"] == [
        {
            "utterance": "納付書をなくしました",
            "expected": "payment.refund",
            "answered": "payment.lost-notice",
        }
    ]
    assert (report["answerable"], report["answered_directly"]) == (2, 1)
    assert "wrong answers: 33.3% (1/3) another topic" in out.stdout


def test_eval_on_the_dev_set_through_the_cli():
    report = json.loads(run("eval", str(DATA / "dev-utterances.tsv"), "--json").stdout)
    assert report["top1"] >= 0.97 and report["unsafe_answers"] == []


def test_eval_bad_file_is_a_clear_error(tmp_path):
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("utterance\texpected\nno tab here\n", encoding="utf-8")
    out = run("eval", str(tsv))
    assert out.returncode == 2 and "bad.tsv:2: expected 2 tab-separated fields" in out.stderr


def test_broken_faq_is_reported_and_nothing_answered(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("category: x\nentries:\n  - id: a\n", encoding="utf-8")
    out = run("ask", "口座振替", "--faq-dir", str(tmp_path))
    assert out.returncode == 2
    assert "a.yaml:3, entry 'a', field 'title'" in out.stderr
    assert run("faq", "check", str(tmp_path)).returncode == 2
    ok = run("faq", "check")
    assert ok.returncode == 0 and "44 entries" in ok.stdout


def test_help_explains_commands_and_configuration():
    out = run("--help")
    assert out.returncode == 0
    for word in ("ask", "eval", "faq", "VOICEBOT_THRESHOLDS__ANSWER", "voicebot.toml"):
        assert word in out.stdout
