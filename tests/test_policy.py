"""The policy decides what to do and about which entry; it never words the reply."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from faq.model import Action as FaqAction
from voicebot import policy
from voicebot.policy import BotAction, Decision, chosen, decide, entry_action


def test_a_decision_carries_no_words(understanding, faq):
    """Every FAQ question and a few control phrases decide an action and an entry only:
    the words are the dialogue's, so no second place can word a reply differently."""
    assert {f.name for f in dataclasses.fields(Decision)} == {
        "action",
        "faq_id",
        "score",
        "intent",
        "candidates",
        "choices",
    }
    texts = [q for entry in faq for q in entry.questions[:2]]
    texts += ["担当者と話したいです", "もう一度お願いします", "以上です", "はい", "ゴミの収集日"]
    actions = set()
    for text in texts:
        decision = decide(understanding.match(text), faq, understanding.settings.thresholds)
        actions.add(decision.action)
        if decision.action in (BotAction.ANSWER, BotAction.REDIRECT, BotAction.CONFIRM):
            assert decision.faq_id in {e.id for e in faq}, text
    assert actions >= {BotAction.ANSWER, BotAction.REDIRECT, BotAction.TRANSFER}


def test_the_policy_module_does_not_import_the_prompts():
    source = Path(policy.__file__).read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert not [name for name in imported if "prompts" in name]


def test_an_entry_calls_for_its_own_action(faq):
    expected = {
        FaqAction.ANSWER: BotAction.ANSWER,
        FaqAction.REDIRECT: BotAction.REDIRECT,
        FaqAction.TRANSFER: BotAction.TRANSFER,
    }
    seen = set()
    for entry in faq:
        assert entry_action(entry) is expected[entry.action], entry.id
        decision = chosen(faq, entry.id)
        assert (decision.action, decision.faq_id, decision.score) == (
            expected[entry.action],
            entry.id,
            1.0,
        )
        seen.add(entry.action)
    assert seen == set(FaqAction)  # the FAQ has entries of every kind
