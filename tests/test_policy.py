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


def _match_with(faq, scores: list[tuple[str, float]]):
    """A match whose candidates score as given (what the matcher would rank)."""
    from faq.matcher import Candidate, Match

    cands = [
        Candidate(faq_id, faq[faq_id].title, faq[faq_id].action, score, score / 2)
        for faq_id, score in scores
    ]
    return Match(text="x", normalized="x", key="x", candidates=cands)


def test_a_weak_match_that_stands_alone_is_confirmed_not_asked_again(understanding, faq):
    """A caller who tells a situation before the question dilutes the match below the
    confirmation threshold; when one entry still leads every other by far, a yes/no
    question about it recovers the turn. Without that lead, or below the lower floor,
    the caller is asked again."""
    thresholds = understanding.settings.thresholds
    assert thresholds.confirm_lead < thresholds.confirm
    score = (thresholds.confirm_lead + thresholds.confirm) / 2
    alone = _match_with(faq, [("juminzei.overview", score), ("kotei.overview", score / 2)])
    decision = decide(alone, faq, thresholds)
    assert (decision.action, decision.faq_id) == (BotAction.CONFIRM, "juminzei.overview")
    near = _match_with(faq, [("juminzei.overview", score), ("kotei.overview", score * 0.8)])
    assert decide(near, faq, thresholds).action is BotAction.REPROMPT
    faint = _match_with(
        faq, [("juminzei.overview", thresholds.confirm_lead - 0.05), ("kotei.overview", 0.01)]
    )
    assert decide(faint, faq, thresholds).action is BotAction.REPROMPT


def test_a_caller_asking_whether_a_payment_arrived_is_not_answered_about_the_tax(
    understanding, faq
):
    """Whether one's own payment reached the city is the caller's account (staff look it
    up): an entry about the tax named is confirmed first, however well it matches."""
    for text in (
        "法人市民税、先月払ったんですがちゃんと反映されてますか",
        "法人市民税を納めたんですが入金されてますか",
    ):
        _, decision = understanding.understand(text)
        assert decision.action is not BotAction.ANSWER, (text, decision)
    _, decision = understanding.understand("法人市民税の申告書はいつまでに出せばいいですか")
    assert (decision.action, decision.faq_id) == (BotAction.ANSWER, "general.corporate")
