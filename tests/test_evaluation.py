"""How the evaluation counts a question that offers two entries."""

from __future__ import annotations

from voicebot.evaluation import evaluate
from voicebot.policy import BotAction

TWO_TOPICS = "証明書の郵送請求と払いすぎた税金の還付"


def test_a_choice_that_offers_the_right_entry_is_right_and_not_a_direct_answer(understanding):
    _, decision = understanding.understand(TWO_TOPICS)
    assert decision.action is BotAction.CHOOSE
    report = evaluate(understanding, [(TWO_TOPICS, "payment.refund")])
    assert report.correct == 1 and report.direct == 0 and not report.wrong_answers
    assert report.actions == {"choose": 1}


def test_a_choice_that_offers_two_wrong_entries_is_wrong_but_not_a_wrong_answer(understanding):
    report = evaluate(understanding, [(TWO_TOPICS, "kotei.sold")])
    assert report.correct == 0 and not report.wrong_answers
    assert report.confusions  # counted against the first entry offered
