"""The evaluation sets: the blind set stays frozen and every label is one the bot can give."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from faq.store import load_faq
from voicebot.evaluation import UNKNOWN, read_labelled

EVAL = Path(__file__).parent / "data" / "eval"
FAQ_DATA = Path(__file__).resolve().parent.parent / "faq" / "data"
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


def test_no_labelled_phrase_appears_in_the_faq_data():
    """Phrases of the labelled sets (development, earlier held-out, validation, blind) never
    appear word for word in what the bot is built from: FAQ titles, examples, keywords and
    answers, synonyms, out-of-domain lists and the recognition table (faq/data/*)."""
    data = Path(__file__).parent / "data"
    shipped = "\n".join(
        p.read_text(encoding="utf-8") for p in sorted(FAQ_DATA.iterdir()) if p.is_file()
    )
    sets = sorted(data.glob("*-utterances.tsv")) + sorted(EVAL.glob("*-utterances.tsv"))
    assert len(sets) >= 5
    for path in sets:
        copied = [u for u, _ in read_labelled(path) if len(u) >= 4 and u in shipped]
        assert copied == [], path.name
