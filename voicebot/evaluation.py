"""Scoring the bot's understanding on labelled utterances (``utterance<TAB>expected``).

``expected`` is an FAQ id, ``control.operator|repeat|hold|resume|goodbye``, or ``unknown`` (the
bot should not answer from the FAQ). Besides accuracy this counts the mistakes a caller
acts on: every confident wrong answer (an answer or a redirect that speaks another
topic), among them the unsafe ones (staff or nothing was right); and how many
answerable questions were answered directly, without a confirmation round trip.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from faq.model import Action as FaqAction
from voicebot.policy import BotAction, Decision
from voicebot.understanding import Understanding

UNKNOWN = "unknown"
CONTROL_LABELS = {
    BotAction.TRANSFER: "control.operator",
    BotAction.REPEAT: "control.repeat",
    BotAction.HOLD: "control.hold",
    BotAction.RESUME: "control.resume",
    BotAction.GOODBYE: "control.goodbye",
}


class EvalFileError(ValueError):
    """The labelled file cannot be read; the message names file and line."""


def read_labelled(path: Path) -> list[tuple[str, str]]:
    """Rows of (utterance, expected); a header line ``utterance\\texpected`` is skipped."""
    rows = []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
                if not row or not "".join(row).strip() or row[0].startswith("#"):
                    continue
                if lineno == 1 and row[0].strip() == "utterance":
                    continue
                if len(row) != 2:
                    raise EvalFileError(f"{path}:{lineno}: expected 2 tab-separated fields")
                rows.append((row[0].strip(), row[1].strip()))
    except OSError as exc:
        raise EvalFileError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise EvalFileError(f"{path}: not UTF-8 text") from exc
    return rows


def predicted_label(decision: Decision, expected: str | None = None) -> str:
    """The label a decision stands for, comparable with ``expected``. A question that
    offers two entries stands for the expected one when it is among them (the caller
    picks it), as a confirmation of the right entry does."""
    if decision.action is BotAction.CHOOSE and expected in decision.choices:
        return expected
    if decision.intent and decision.intent != "faq":
        return CONTROL_LABELS.get(decision.action, UNKNOWN)
    return decision.faq_id or UNKNOWN


def top1_label(match_top: str | None, decision: Decision) -> str:
    """The matcher's first choice regardless of thresholds (controls and unknown as decided)."""
    decided = predicted_label(decision)
    if decided.startswith("control.") or match_top is None:
        return decided
    return match_top


@dataclass
class EvalReport:
    total: int = 0
    correct: int = (
        0  # the decided label is right (answer, confirm, transfer, ... on the right topic)
    )
    top1_correct: int = 0  # the first candidate is right, whatever the confidence
    per_label: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)
    unsafe: list[dict] = field(default_factory=list)
    # Answers or redirects that spoke another topic than the one asked, whatever was right.
    wrong_answers: list[dict] = field(default_factory=list)
    answerable: int = 0  # rows whose right action is the FAQ's answer or redirect
    direct: int = 0  # ... of which were answered (or redirected) at once, on the right topic
    actions: Counter[str] = field(default_factory=Counter)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def top1(self) -> float:
        return self.top1_correct / self.total if self.total else 0.0

    @property
    def wrong_answer_rate(self) -> float:
        return len(self.wrong_answers) / self.total if self.total else 0.0

    @property
    def direct_rate(self) -> float:
        return self.direct / self.answerable if self.answerable else 0.0

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "correct": self.correct,
            "accuracy": round(self.accuracy, 4),
            "top1": round(self.top1, 4),
            "per_label": {
                k: {"correct": c, "total": t, "accuracy": round(c / t, 4)}
                for k, (c, t) in sorted(self.per_label.items())
            },
            "confusions": [
                {"expected": e, "got": g, "count": n} for (e, g), n in self.confusions.most_common()
            ],
            "unsafe_answers": self.unsafe,
            "wrong_answers": self.wrong_answers,
            "wrong_answer_rate": round(self.wrong_answer_rate, 4),
            "answerable": self.answerable,
            "answered_directly": self.direct,
            "direct_rate": round(self.direct_rate, 4),
            "actions": dict(self.actions),
        }


def evaluate(understanding: Understanding, rows: list[tuple[str, str]]) -> EvalReport:
    """Run every row through the bot's understanding and tally the results."""
    report = EvalReport()
    faq = understanding.faq
    for text, expected in rows:
        match, decision = understanding.understand(text)
        got = predicted_label(decision, expected)
        top = match.top.faq_id if match.top else None
        first = got if expected == UNKNOWN else top1_label(top, decision)
        report.top1_correct += first == expected
        report.total += 1
        report.actions[decision.action.value] += 1
        stat = report.per_label[expected]
        stat[1] += 1
        if got == expected:
            report.correct += 1
            stat[0] += 1
        else:
            report.confusions[(expected, got)] += 1
        expected_entry = faq.get(expected)
        needs_no_answer = expected == UNKNOWN or (
            expected_entry is not None and expected_entry.action is FaqAction.TRANSFER
        )
        spoke_topic = decision.action in (BotAction.ANSWER, BotAction.REDIRECT)
        if needs_no_answer and decision.action is BotAction.ANSWER and got != expected:
            report.unsafe.append({"utterance": text, "expected": expected, "answered": got})
        if spoke_topic and got != expected:
            report.wrong_answers.append({"utterance": text, "expected": expected, "answered": got})
        if expected_entry is not None and expected_entry.action is not FaqAction.TRANSFER:
            report.answerable += 1
            report.direct += spoke_topic and got == expected
    return report
