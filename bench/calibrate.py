"""Fit the matcher's confidence calibration and print it as JSON.

Positives and negatives come from the FAQ itself: each example question is held
out of the index in turn and matched (right or wrong top-1) — as written, and as
speech recognition heard it after Kokoro read it over a phone channel
(``bench/data/faq-asr-transcripts.tsv``, made by ``bench/make_faq_asr_set.py``) —
plus out-of-domain phrases from ``bench/data/out-of-domain.txt`` (always wrong).
A logistic model on (raw top score, margin) is fitted by Newton's method. No
evaluation data (tests/data) is used.

    python bench/calibrate.py            # fit and print
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from faq.matcher import Matcher
from faq.store import load_faq

HERE = Path(__file__).parent


def samples(m: Matcher) -> tuple[np.ndarray, np.ndarray]:
    feats, labels = [], []
    doc = 0
    for ei, entry in enumerate(m.entries):
        for text in (entry.title, *entry.questions):
            raw = m.raw_scores(text, exclude_doc=doc)
            doc += 1
            order = np.argsort(-raw)
            feats.append((raw[order[0]], raw[order[0]] - raw[order[1]]))
            labels.append(1.0 if order[0] == ei else 0.0)
    doc_of = {}
    doc = 0
    for entry in m.entries:
        doc_of[entry.id] = doc
        doc += 1 + len(entry.questions)
    asr = HERE / "data" / "faq-asr-transcripts.tsv"
    with asr.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            held_out = doc_of[row["entry_id"]] + 1 + int(row["question_index"])
            raw = m.raw_scores(row["transcript"], exclude_doc=held_out)
            order = np.argsort(-raw)
            feats.append((raw[order[0]], raw[order[0]] - raw[order[1]]))
            labels.append(1.0 if m.entries[order[0]].id == row["entry_id"] else 0.0)
    ood = HERE / "data" / "out-of-domain.txt"
    for line in ood.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            raw = m.raw_scores(line.strip())
            order = np.argsort(-raw)
            feats.append((raw[order[0]], raw[order[0]] - raw[order[1]]))
            labels.append(0.0)
    return np.array(feats, dtype=np.float64), np.array(labels)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 50) -> np.ndarray:
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-xb @ w))
        grad = xb.T @ (p - y) + l2 * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + l2 * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    return w


def main() -> int:
    m = Matcher(load_faq())
    x, y = samples(m)
    w = fit_logistic(x, y)
    p = 1 / (1 + np.exp(-(w[0] + x @ w[1:])))
    bins = []
    for lo in (0.0, 0.2, 0.4, 0.6, 0.8):
        sel = (p >= lo) & (p < lo + 0.2 + (1e-9 if lo == 0.8 else 0))
        if sel.any():
            bins.append(
                {
                    "range": [lo, round(lo + 0.2, 1)],
                    "n": int(sel.sum()),
                    "accuracy": round(float(y[sel].mean()), 3),
                }
            )
    print(
        json.dumps(
            {
                "calibration": {
                    "bias": round(w[0], 3),
                    "w_raw": round(w[1], 3),
                    "w_margin": round(w[2], 3),
                },
                "samples": len(y),
                "held_out_top1": round(float(y[: len(y)].mean()), 3),
                "reliability": bins,
            },
            ensure_ascii=False,
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
