"""Every word the dialogue speaks, pinned: what a caller hears must not change by accident.

The dialogue is driven with text (as tests/test_dialogue.py does) over every FAQ entry's
first example question, every development utterance, and the confirm / choose / deny /
repeat / goodbye / staff / key / failure / shutdown paths, in and outside office hours.
For each step the reply's parts, kind, next step, the decision behind it and the
handover staff would see are compared with tests/data/dialogue-words.json.

That file is generated from the code, so a change in the FAQ, the prompts or the matcher
changes it on purpose too. Then regenerate it and read the diff before committing:

    .venv/bin/python tests/test_dialogue_words.py
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from conftest import read_tsv

from voicebot.config import Settings, Thresholds
from voicebot.dialogue import Dialogue, Reply, State
from voicebot.understanding import Understanding

EXPECTED = Path(__file__).parent / "data" / "dialogue-words.json"
JST = ZoneInfo("Asia/Tokyo")
TIMES = {
    "open": dt.datetime(2026, 11, 24, 10, 0, tzinfo=JST),  # a Tuesday morning
    "closed": dt.datetime(2026, 11, 22, 10, 0, tzinfo=JST),  # a Sunday
}
# Thresholds: the defaults, and one where every match is confirmed first.
THRESHOLDS = {"default": {}, "confirm_all": {"answer": 0.9999}}
TWO_TOPICS = "証明書の郵送請求と払いすぎた税金の還付"  # two entries the FAQ explains alike
QUESTION = "納付書をなくしてしまいました"
REDIRECT = "確定申告はどこでするんですか"
UNKNOWN = "ゴミの収集日を教えてください"

Step = tuple[Any, ...]


def _scripts(understanding: Understanding) -> Iterator[tuple[str, str, str, list[Step]]]:
    """(name, time, thresholds, steps): every conversation whose words are pinned."""
    say = "say"
    for entry in understanding.faq:
        q = entry.questions[0]
        for when in TIMES:
            yield (
                f"entry {entry.id} {when}",
                when,
                "default",
                [(say, q), (say, "もう一度お願いします"), (say, "はい"), (say, "以上です")],
            )
            yield (
                f"entry {entry.id} {when} confirmed",
                when,
                "confirm_all",
                [(say, q), (say, "はい"), (say, "もう一度お願いします"), (say, "いいえ")],
            )
    for text, _expected in read_tsv("dev-utterances.tsv"):
        for when in TIMES:
            yield f"dev {text} {when}", when, "default", [(say, text)]

    paths: dict[str, list[Step]] = {
        "repeat before anything": [(say, "もう一度お願いします")],
        "repeat after an answer": [(say, QUESTION), (say, "すみません、もう一度お願いします")],
        "repeat twice": [(say, QUESTION), (say, "もう一度"), (say, "もう一度")],
        "goodbye": [(say, "以上です、ありがとうございました")],
        "operator": [(say, "担当者と話したいです")],
        "key 0": [("dtmf", "0")],
        "key 0 after a question": [(say, QUESTION), ("dtmf", "0")],
        "stray keys": [("dtmf", "5"), ("dtmf", "1"), ("dtmf", "#"), (say, QUESTION)],
        "yes outside a question": [(say, "はい")],
        "not understood twice": [(say, UNKNOWN), (say, "犬の登録はどうするんですか")],
        "not understood then answered": [(say, UNKNOWN), (say, QUESTION), (say, UNKNOWN)],
        "silence twice": [("no_input",), ("no_input",)],
        "silence then question": [("no_input",), (say, QUESTION)],
        "recogniser failure": [(say, QUESTION), ("failure", "recognizer")],
        "synthesiser failure": [("failure", "synthesizer")],
        "shutdown": [(say, QUESTION), ("shutdown",)],
        "transfer failed": [(say, "担当者と話したいです"), ("transfer_failed",), (say, QUESTION)],
        "transfer failed, staff asked again": [
            (say, "担当者と話したいです"),
            ("transfer_failed",),
            ("dtmf", "0"),
            ("failure", "synthesizer"),
        ],
        "redirect yes": [(say, REDIRECT), (say, "はい、お願いします")],
        "redirect no": [(say, REDIRECT), (say, "いいえ、大丈夫です")],
        "redirect key 1": [(say, REDIRECT), ("dtmf", "1")],
        "redirect key 2": [(say, REDIRECT), ("dtmf", "2"), (say, "もう一度お願いします")],
        "redirect then question": [(say, REDIRECT), (say, "あと、納付書をなくしたんですが")],
        "redirect repeated": [(say, REDIRECT), (say, "もう一度お願いします")],
        "choose first by words": [(say, TWO_TOPICS), (say, "前の方です")],
        "choose second by words": [(say, TWO_TOPICS), (say, "後の方です")],
        "choose by key 1": [(say, TWO_TOPICS), ("dtmf", "1")],
        "choose by key 2": [(say, TWO_TOPICS), ("dtmf", "2")],
        "choose by topic": [(say, TWO_TOPICS), (say, "還付のほうです")],
        "choose neither": [(say, TWO_TOPICS), (say, "いいえ、どちらでもないです")],
        "choose yes asks again": [(say, TWO_TOPICS), (say, "はい"), (say, "後の方")],
        "choose denied twice": [
            (say, TWO_TOPICS),
            (say, "いいえ"),
            (say, TWO_TOPICS),
            (say, "はい"),
        ],
        "choose a new question": [
            (say, TWO_TOPICS),
            (say, "口座振替の申し込みはどうすればいいですか"),
        ],
        "choose then repeat": [(say, TWO_TOPICS), (say, "もう一度お願いします")],
        "choose staff topic": [
            (say, TWO_TOPICS),
            (say, "税金が払えないので分割にしてほしいんです"),
        ],
        "turn limit": [(say, QUESTION)] * 12 + [(say, "コンビニで払えますか")],
        "unsure hearing confirms": [
            ("heard", QUESTION, 0.2),
            (say, "はい"),
            ("heard", QUESTION, 0.2),
            ("dtmf", "2"),
            ("heard", QUESTION, 0.2),
            (say, "いいえ"),
        ],
        "unsure hearing of a redirect": [("heard", REDIRECT, 0.2), ("dtmf", "1")],
        "unsure hearing of staff is still staff": [
            ("heard", "税金が払えないので分割にしてほしいんです", 0.2)
        ],
        "whisper evidence": [("unprompted", QUESTION, 0.05), (say, "はい")],
        "alternatives": [("alternatives", "納付所をなくしてしまいました", QUESTION)],
        "undo a turn": [
            (say, QUESTION),
            ("snapshot",),
            (say, "はい"),
            ("restore",),
            (say, "もう一度お願いします"),
            ("snapshot",),
            (say, TWO_TOPICS),
            ("restore",),
            ("dtmf", "1"),
        ],
        "undo an ending": [("snapshot",), (say, "以上です"), ("restore",), (say, QUESTION)],
    }
    yield "greeting", "open", "default", []
    for name, steps in paths.items():
        for when in TIMES:
            yield name + " " + when, when, "default", steps
            yield name + " " + when + " confirmed", when, "confirm_all", steps


def _reply_record(reply: Reply | None, dialogue: Dialogue) -> dict[str, Any] | None:
    if reply is None:
        return None
    decision = reply.decision
    return {
        "parts": list(reply.parts),
        "kind": reply.kind,
        "next": reply.next.value,
        "expect_yes_no": reply.expect_yes_no,
        "state": dialogue.state.value,
        "decision": None
        if decision is None
        else {
            "action": decision.action.value,
            "faq_id": decision.faq_id,
            "score": round(decision.score, 4),
            "intent": decision.intent,
            "choices": list(decision.choices),
        },
        "handover": reply.handover.as_dict() if reply.handover else None,
    }


def _run(dialogue: Dialogue, steps: list[Step]) -> list[dict[str, Any]]:
    """Drive one conversation; stop when it ends (nothing more would be heard), unless a
    hand-over failed, which brings the call back as it does in a real call."""
    greeting = dialogue.start()
    out: list[dict[str, Any]] = []
    if not steps:  # the greeting is the same in every conversation: pinned once
        out.append({"step": ["start"], "reply": _reply_record(greeting, dialogue)})
    saved: Any = None
    for step in steps:
        if dialogue.state is State.ENDED and step[0] not in ("restore", "transfer_failed"):
            break
        reply: Reply | None = None
        match step:
            case ("say", text):
                reply = dialogue.on_utterance(text)
            case ("heard", text, probability):
                reply = dialogue.on_utterance(text, heard_probability=probability)
            case ("unprompted", text, probability):
                reply = dialogue.on_utterance(text, (), 0.9, {text: probability})
            case ("alternatives", text, *others):
                reply = dialogue.on_utterance(text, others)
            case ("dtmf", digit):
                reply = dialogue.on_dtmf(digit)
            case ("no_input",):
                reply = dialogue.on_no_input()
            case ("failure", component):
                reply = dialogue.on_failure(component)
            case ("shutdown",):
                reply = dialogue.on_shutdown()
            case ("transfer_failed",):
                reply = dialogue.on_transfer_failed()
            case ("snapshot",):
                saved = dialogue.checkpoint()
            case ("restore",):
                saved.restore()
            case _:
                raise ValueError(step)
        out.append({"step": list(step), "reply": _reply_record(reply, dialogue)})
    return out


def conversations(base: Understanding) -> dict[str, list[dict[str, Any]]]:
    """Every pinned conversation, by name, as the current code speaks it."""
    understandings = {}
    for name, overrides in THRESHOLDS.items():
        settings = base.settings.model_copy(deep=True)
        settings.thresholds = Thresholds(**overrides)
        understandings[name] = Understanding(faq=base.faq, matcher=base.matcher, settings=settings)
    result = {}
    for name, when, thresholds, steps in _scripts(base):
        at = TIMES[when]
        dialogue = Dialogue(understandings[thresholds], now=lambda at=at: at)
        assert name not in result, name
        result[name] = _run(dialogue, steps)
    return result


def test_every_reply_is_word_for_word_what_it_was(understanding: Understanding) -> None:
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    actual = conversations(understanding)
    assert sorted(actual) == sorted(expected)
    changed = [name for name in expected if actual[name] != expected[name]]
    for name in changed[:3]:  # the first few in full, to read what moved
        assert actual[name] == expected[name], name
    assert not changed


def test_the_pinned_conversations_cover_every_kind_of_reply() -> None:
    """The expected data reaches every reply kind the dialogue has, in both directions."""
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    replies = [s["reply"] for conv in expected.values() for s in conv if s["reply"]]
    kinds = {r["kind"] for r in replies}
    assert kinds >= {
        "greeting",
        "answer",
        "confirm",
        "choose",
        "redirect",
        "transfer",
        "repeat",
        "goodbye",
        "reprompt",
        "prompt",
        "out_of_hours",
        "failure",
        "shutdown",
        "transfer_failed",
        "staff_unreachable",
    }
    assert {r["next"] for r in replies} == {"listen", "transfer", "hangup"}
    assert len(replies) > 1000


def main() -> None:
    """Regenerate the expected data from the current code."""
    data = conversations(Understanding.load(Settings()))
    lines = []  # one step a line, so that a diff shows which reply moved
    for name in sorted(data):
        steps = ",\n  ".join(json.dumps(s, ensure_ascii=False, sort_keys=True) for s in data[name])
        lines.append(f"{json.dumps(name, ensure_ascii=False)}: [\n  {steps}\n]")
    EXPECTED.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    print(f"{EXPECTED}: {len(data)} conversations")


if __name__ == "__main__":
    main()
