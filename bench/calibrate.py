"""Fit the matcher's confidence calibration and print it as JSON.

Positives and negatives come from the FAQ itself: each example question is held
out of the index in turn and matched (right or wrong top-1) — as written, and as
speech recognition heard it after Kokoro read it over a phone channel
(``bench/data/faq-asr-transcripts.tsv`` and the matcher's table ``faq/data/heard.tsv``,
both made by ``bench/make_faq_asr_set.py``; a question's recognitions are held out with
it) — plus out-of-domain phrases from ``bench/data/out-of-domain.txt`` (always wrong).
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
# Off-topic callers' share of the fit. The FAQ's questions and their recognitions outnumber
# the out-of-domain phrases many times over, and more so with every recognition added; left
# unweighted, an off-topic question with one shared word (「犬の登録」 → インボイスの登録) would
# get a middling confidence. 0.18 is the share they had before recognitions were added.
OOD_SHARE = 0.18


def samples(m: Matcher) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, is out-of-domain) of every calibration sample."""
    feats, labels = [], []
    doc = 0
    for ei, entry in enumerate(m.entries):
        for text in (entry.title, *entry.questions):
            raw = m.raw_scores(text, exclude_doc=doc)
            doc += 1
            order = np.argsort(-raw)
            feats.append((raw[order[0]], raw[order[0]] - raw[order[1]]))
            labels.append(1.0 if order[0] == ei else 0.0)
    # Real recognitions: the tuning set (bench/make_faq_asr_set.py) and the matcher's own
    # heard table (faq.heard), each held out together with its question's recognitions.
    heard = [(r.entry_id, r.question, r.heard) for r in m.heard]
    asr = HERE / "data" / "faq-asr-transcripts.tsv"
    with asr.open(encoding="utf-8") as fh:
        heard += [
            (row["entry_id"], row["question"], row["transcript"])
            for row in csv.DictReader(fh, delimiter="\t")
        ]
    for entry_id, question, text in heard:
        held_out = m.doc_of.get((entry_id, question))
        if held_out is None:
            continue
        raw = m.raw_scores(text, exclude_doc=held_out)
        order = np.argsort(-raw)
        feats.append((raw[order[0]], raw[order[0]] - raw[order[1]]))
        labels.append(1.0 if m.entries[order[0]].id == entry_id else 0.0)
    in_domain = len(labels)
    ood = HERE / "data" / "out-of-domain.txt"
    for line in ood.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            raw = m.raw_scores(line.strip())
            order = np.argsort(-raw)
            feats.append((raw[order[0]], raw[order[0]] - raw[order[1]]))
            labels.append(0.0)
    is_ood = np.arange(len(labels)) >= in_domain
    return np.array(feats, dtype=np.float64), np.array(labels), is_ood


def fit_logistic(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float = 1e-3, steps: int = 50
) -> np.ndarray:
    """Weighted logistic regression by Newton's method: [bias, *coefficients]."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-xb @ w))
        grad = xb.T @ (weight * (p - y)) + l2 * w
        hess = (xb * (weight * p * (1 - p))[:, None]).T @ xb + l2 * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    return w


def ood_weights(is_ood: np.ndarray, share: float = OOD_SHARE) -> np.ndarray:
    """Sample weights giving the out-of-domain phrases ``share`` of the fit."""
    weight = np.ones(len(is_ood))
    n_ood = int(is_ood.sum())
    if n_ood:
        weight[is_ood] = share * (len(is_ood) - n_ood) / ((1 - share) * n_ood)
    return weight


def main() -> int:
    m = Matcher(load_faq())
    x, y, is_ood = samples(m)
    w = fit_logistic(x, y, ood_weights(is_ood))
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
