"""Unanswered questions: which utterances count, and paraphrases grouped together."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dbfixtures
import pytest
from dbfixtures import ScriptedTurn, record, scripted_call

from dashboards.unanswered import (
    group_utterances,
    mark_reviewed,
    similarity,
    unanswered_groups,
    unanswered_utterances,
)

# The same tests on SQLite and PostgreSQL (fixtures from dbfixtures).
postgres_url = dbfixtures.postgres_url
database_url = dbfixtures.database_url
db = dbfixtures.db

JST = ZoneInfo("Asia/Tokyo")
DAY = dt.date(2026, 11, 5)

DOG = [
    "犬の登録料はいくらですか",
    "えーと、犬の登録手数料っていくらですか",
    "犬を登録するのにいくらかかりますか",
    "いぬの登録料金を知りたいんですが",
]
FURUSATO = [
    "ふるさと納税の控除について知りたいです",
    "ふるさと納税の控除はどうなりますか",
    "ふるさと納税をしたら控除されますか",
]
PARKING = ["駐車場はどこにありますか", "市役所の駐車場ってどこですか"]
SCRAP_CAR = "軽自動車を廃車にしたい"
PENSION = "年金から住民税が引かれているのはなぜですか"
WATER = "水道料金の支払いをしたいんですが"


def reprompt(text: str, score: float = 0.2, candidates=None) -> ScriptedTurn:
    return ScriptedTurn(text, "reprompt", None, score, 500.0, candidates)


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=JST)


CALLS = [
    scripted_call(
        "d1", at(9), [reprompt(DOG[0], candidates=[{"faq_id": "general.fees", "score": 0.3}])]
    ),
    scripted_call("d2", at(9, 5), [reprompt(DOG[1]), reprompt(DOG[0])]),  # said twice
    scripted_call("d3", at(9, 10), [reprompt(DOG[2])]),
    scripted_call(
        "d4", at(9, 15), [reprompt(DOG[3], candidates=[{"faq_id": "general.fees", "score": 0.2}])]
    ),
    # Confirmations below the answer threshold; the caller in f1 was answered right after.
    scripted_call(
        "f1",
        at(10),
        [
            ScriptedTurn(FURUSATO[0], "confirm", "juminzei.deductions", 0.55),
            ScriptedTurn("はい", "answer", "juminzei.furusato", 1.0),
        ],
    ),
    scripted_call(
        "f2", at(10, 5), [ScriptedTurn(FURUSATO[1], "confirm", "juminzei.deductions", 0.5)]
    ),
    scripted_call("f3", at(10, 10), [reprompt(FURUSATO[2], 0.35)]),
    # Not understood twice: asked again, then handed over.
    scripted_call(
        "p1",
        at(11),
        [reprompt(PARKING[0]), ScriptedTurn(PARKING[1], "transfer", None, 0.1)],
        outcome="transferred",
        transfer=("not_understood", True),
    ),
    scripted_call("s1", at(11, 30), [reprompt(SCRAP_CAR)]),
    scripted_call(
        "t1",
        at(12),
        [ScriptedTurn(PENSION, "transfer", "juminzei.pension", 0.9)],
        outcome="transferred",
        transfer=("staff_topic", True),
    ),
    # Told it was not a tax: listed, in case it was a tax question taken for one.
    scripted_call("n1", at(12, 30), [ScriptedTurn(WATER, "not_a_tax", None, 0.0)]),
    # Not unanswered: a confident confirmation, a request for a person, a key press, answers.
    scripted_call(
        "x1", at(13), [ScriptedTurn("口座振替の話", "confirm", "payment.account-transfer", 0.8)]
    ),
    scripted_call(
        "x2",
        at(13, 5),
        [ScriptedTurn("担当者と話したい", "transfer", None, 1.0)],
        outcome="transferred",
        transfer=("caller_request", True),
    ),
    scripted_call("x3", at(13, 10), [reprompt("[DTMF 5]")]),
    scripted_call(
        "x4", at(13, 15), [ScriptedTurn("納付書をなくした", "answer", "payment.lost-notice")]
    ),
    # Another day.
    scripted_call("y1", at(9) + dt.timedelta(days=1), [reprompt(DOG[0])]),
]


@pytest.fixture
def recorded(db):
    record(db, *CALLS)
    return db


def test_which_utterances_are_unanswered(recorded):
    found = unanswered_utterances(recorded, DAY, DAY, answer_threshold=0.70)
    texts = sorted(u.text for u in found)
    expected = [*DOG, DOG[0], *FURUSATO, *PARKING, SCRAP_CAR, PENSION, WATER]
    assert texts == sorted(expected)
    kinds = {u.text: u.kind for u in found}
    assert kinds[WATER] == "not_a_tax"
    assert kinds[PARKING[1]] == "not_understood"
    assert kinds[PENSION] == "transferred"
    assert kinds[FURUSATO[0]] == "low_confidence"
    assert {u.text: u.answered_next for u in found}[FURUSATO[0]] == "juminzei.furusato"
    without = unanswered_utterances(recorded, DAY, DAY, include_transferred=False)
    assert PENSION not in {u.text for u in without}
    assert PARKING[1] in {u.text for u in without}  # not understood is always listed
    # A lower threshold turns the 0.55 confirmation into a confident one.
    assert FURUSATO[0] not in {
        u.text for u in unanswered_utterances(recorded, DAY, DAY, answer_threshold=0.5)
    }


def test_paraphrases_are_grouped_and_unrelated_kept_apart(recorded):
    groups = unanswered_groups(recorded, DAY, DAY)
    as_sets = [sorted({e.text for e in g.examples}) for g in groups]
    # Largest groups first; equal sizes: the most recent first.
    singles = [[WATER], [PENSION], [SCRAP_CAR]]  # the most recent first
    assert as_sets == [sorted(DOG), sorted(FURUSATO), sorted(PARKING), *singles]
    dog, furusato, parking = groups[:3]
    assert dog.count == 5  # DOG[0] was said twice
    assert dog.representative in DOG
    assert dog.kinds == {"low_confidence": 5}
    assert dog.candidates[0].faq_id == "general.fees"
    assert dog.candidates[0].votes == 2
    assert len(dog.turn_ids) == 5
    # A turn's time is when the caller finished speaking (5 s into these calls).
    assert dog.first_at == at(9, 0) + dt.timedelta(seconds=5)
    assert dog.last_at == at(9, 15) + dt.timedelta(seconds=5)
    # The answer the caller got right after rephrasing is the best hint.
    assert furusato.best_faq_id == "juminzei.furusato"
    assert [c.faq_id for c in furusato.candidates] == ["juminzei.furusato", "juminzei.deductions"]
    assert parking.kinds == {"low_confidence": 1, "not_understood": 1}


def test_reviewed_utterances_leave_the_list(recorded):
    dog = unanswered_groups(recorded, DAY, DAY)[0]
    assert mark_reviewed(recorded, dog.turn_ids) == 5
    remaining = unanswered_groups(recorded, DAY, DAY)
    assert all(DOG[0] not in {e.text for e in g.examples} for g in remaining)
    assert len(unanswered_utterances(recorded, DAY, DAY, include_reviewed=True)) == 13
    assert mark_reviewed(recorded, []) == 0
    # Another day's utterances are untouched.
    assert [
        u.text
        for u in unanswered_utterances(
            recorded, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=1)
        )
    ] == [DOG[0]]


def test_similarity_properties():
    assert similarity(DOG[0], DOG[0]) == 1.0
    assert similarity("えーと、犬の登録料はいくらですか", DOG[0]) == 1.0  # fillers, politeness
    # Wrong kanji from recognition still sound the same.
    assert similarity("納付書を再発行してほしい", "農夫書を再発行してほしい") > 0.6
    # Different taxes are different questions even when worded alike.
    assert similarity("住民税の納付書をなくした", "固定資産税の納付書をなくした") < 0.46
    for a in DOG:
        for b in PARKING + FURUSATO:
            assert similarity(a, b) < 0.46


def test_grouping_without_a_database_is_deterministic():
    from dashboards.unanswered import UnansweredUtterance

    now = dt.datetime(2026, 11, 5, tzinfo=dt.UTC)
    items = [
        UnansweredUtterance(i, f"c{i}", now, text, "low_confidence", "reprompt", 0.1, None, [])
        for i, text in enumerate(DOG + PARKING + [SCRAP_CAR])
    ]
    first = group_utterances(items)
    second = group_utterances(list(reversed(items)))
    assert [g.representative for g in first] == [g.representative for g in second]
    assert [g.count for g in first] == [4, 2, 1]


def _many_wordings(n: int) -> list:
    from dashboards.unanswered import UnansweredUtterance

    now = dt.datetime(2026, 11, 5, tzinfo=dt.UTC)
    texts = [f"問い合わせ番号{i}について" for i in range(n)]
    texts += texts[:10]  # the first ten said twice: the most frequent
    return [
        UnansweredUtterance(i, f"c{i}", now, t, "low_confidence", "reprompt", 0.1, None, [])
        for i, t in enumerate(texts)
    ]


@pytest.mark.parametrize("alike", [0.0, 1.0])
def test_grouping_a_large_period_is_bounded(monkeypatch, alike):
    """3,000 wordings: the 2,000 most frequent are grouped, the rest counted as left out;
    a group of 2,000 wordings picks its representative among its 50 most frequent."""
    import dashboards.unanswered as unanswered

    comparisons = 0

    def counted(a: str, b: str) -> float:
        nonlocal comparisons
        comparisons += 1
        return alike

    monkeypatch.setattr(unanswered, "similarity", counted)
    groups = group_utterances(_many_wordings(3000))
    kept, representative_candidates = 2000, 50
    if alike:  # one group: each wording against up to 12 members, then the representative
        assert comparisons <= kept * 12 + representative_candidates**2
        assert len(groups) == 1
    else:  # all apart: each wording against every group so far
        assert comparisons <= kept * (kept - 1) // 2
        assert len(groups) == kept
    assert groups.wordings_left_out == 3000 - kept
    assert sum(g.count for g in groups) + groups.utterances_left_out == 3010
    assert {"問い合わせ番号0について"} <= {g.representative for g in groups}
