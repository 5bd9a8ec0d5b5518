"""The evaluation sets: the blind set stays frozen and every label is one the bot can give."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from faq.store import load_faq
from voicebot.evaluation import UNKNOWN, read_labelled

EVAL = Path(__file__).parent / "data" / "eval"
BLIND_SHA256 = "d792dad34265cfe5ee61217adecee4d91d233d15e25f9eaef309c307a6546f52"
CONTROLS = {"control.operator", "control.repeat", "control.goodbye"}


def test_blind_set_is_frozen():
    digest = hashlib.sha256((EVAL / "blind-utterances.tsv").read_bytes()).hexdigest()
    assert digest == BLIND_SHA256, "the blind set is frozen: write a new one instead of editing"


@pytest.mark.parametrize("name", ["blind-utterances.tsv", "validation-utterances.tsv"])
def test_labels_are_faq_entries_or_controls(name):
    faq = load_faq()
    rows = read_labelled(EVAL / name)
    assert len(rows) >= 150
    bad = [e for _, e in rows if e not in CONTROLS and e != UNKNOWN and faq.get(e) is None]
    assert bad == []


def test_no_evaluation_phrase_is_an_faq_example():
    """Phrases of the reporting and validation sets must never become FAQ examples."""
    faq = load_faq()
    examples = {q for entry in faq.entries for q in entry.questions}
    for name in ("blind-utterances.tsv", "validation-utterances.tsv"):
        copied = [u for u, _ in read_labelled(EVAL / name) if u in examples]
        assert copied == [], name
