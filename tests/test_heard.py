"""Recognised phrasings of the FAQ's questions (faq.heard) and their sparse index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faq.heard import HeardQuestion, default_heard_path, load_heard
from faq.matcher import Matcher
from faq.postings import ColumnPostings
from faq.store import load_faq

QUESTION = "督促状っていうのが届いたんですが、どういうことですか"
# A garble no reading rescues: 督促状 → 特殊所 (トクシュショ), as Whisper base writes it.
GARBLED = "特殊所っていうのが届いたんですが、どういうことですか"


@pytest.fixture(scope="module")
def faq():
    return load_faq()


def test_postings_dot_equals_the_dense_product() -> None:
    rng = np.random.default_rng(7)
    dense = np.where(rng.random((40, 30)) < 0.1, rng.random((40, 30)), 0.0).astype(np.float32)
    rows = [(np.flatnonzero(dense[i]), dense[i][np.flatnonzero(dense[i])]) for i in range(40)]
    postings = ColumnPostings(rows, 30)
    columns = np.array([3, 17, 0, 29, 8], dtype=np.int64)
    values = rng.random(5).astype(np.float32)
    np.testing.assert_allclose(postings.dot(columns, values), dense[:, columns] @ values, rtol=1e-5)
    assert not postings.dot(np.array([], dtype=np.int64), np.array([], np.float32)).any()
    for i in (0, 17, 39):
        np.testing.assert_array_equal(postings.row_vector(i), dense[i])


def test_load_heard_reads_transcript_and_alternative(tmp_path: Path) -> None:
    table = tmp_path / "heard.tsv"
    table.write_text(
        "entry_id\tquestion_index\tvoice\tquestion\ttranscript\talternative\n"
        f"payment.overdue\t0\tv\t{QUESTION}\t{GARBLED}\t{GARBLED}\n"
        f"payment.overdue\t0\tw\t{QUESTION}\t特則上が届いた\t\n",
        encoding="utf-8",
    )
    rows = load_heard(table)
    assert [r.heard for r in rows] == [GARBLED, "特則上が届いた"]
    assert all(r.entry_id == "payment.overdue" and r.question == QUESTION for r in rows)
    assert load_heard(tmp_path / "missing.tsv") == []


def test_a_heard_phrasing_brings_its_garble_to_the_entry(faq) -> None:
    assert QUESTION in faq["payment.overdue"].questions
    plain = Matcher(faq, heard=[])
    taught = Matcher(faq, heard=[HeardQuestion("payment.overdue", QUESTION, GARBLED)])
    garble = "特殊所が来たんですけど"
    before, after = plain.match(garble).top, taught.match(garble).top
    assert after is not None and after.faq_id == "payment.overdue"
    assert before is None or before.faq_id != "payment.overdue" or before.score < after.score


def test_stale_rows_are_ignored_and_held_out_questions_take_their_phrasings_along(faq) -> None:
    stale = HeardQuestion("payment.overdue", "このような質問はFAQにない", GARBLED)
    gone = HeardQuestion("no.such-entry", QUESTION, GARBLED)
    assert Matcher(faq, heard=[stale, gone]).heard_postings.n_rows == 0
    taught = Matcher(faq, heard=[HeardQuestion("payment.overdue", QUESTION, GARBLED)])
    doc = taught.doc_of[("payment.overdue", QUESTION)]
    held = taught.raw_scores(GARBLED, exclude_doc=doc)
    kept = taught.raw_scores(GARBLED)
    ei = [e.id for e in taught.entries].index("payment.overdue")
    assert held[ei] < kept[ei]  # calibration must not see a question's own recognitions


def test_the_shipped_table_names_only_questions_of_the_shipped_faq(faq) -> None:
    rows = load_heard(default_heard_path())
    assert len(rows) > 1000
    written = {(e.id, t) for e in faq for t in (e.title, *e.questions)}
    stale = [r for r in rows if (r.entry_id, r.question) not in written]
    assert not stale, f"{len(stale)} rows of heard.tsv name no FAQ question: refresh it"
