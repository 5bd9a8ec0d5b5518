"""Benchmark: FAQ load time, matcher build time and per-utterance understanding latency.

Prints JSON. The utterances are the dev set plus ASR-style corrupted copies, so the
figure covers the sound-key and fuzzy paths too.

    python bench/ask_latency.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from asr_noise import corrupt  # noqa: E402

from faq.matcher import Matcher  # noqa: E402
from faq.store import load_faq  # noqa: E402
from voicebot.config import Settings  # noqa: E402
from voicebot.policy import decide  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    t0 = time.perf_counter()
    faq = load_faq()
    t1 = time.perf_counter()
    matcher = Matcher(faq)
    t2 = time.perf_counter()

    with (ROOT / "tests" / "data" / "dev-utterances.tsv").open(encoding="utf-8") as fh:
        texts = [row[0] for row in list(csv.reader(fh, delimiter="\t"))[1:]]
    rng = random.Random(1)
    texts += [corrupt(t, rng) for t in texts]
    thresholds = Settings().thresholds
    # The first call of each text fills reading caches; measure fresh texts separately.
    cold, warm = [], []
    for i in range(args.repeat):
        for text in texts:
            s = time.perf_counter()
            # the matching itself: ``match`` keeps recent results, and a call hits them
            decide(matcher._match(text, 3), faq, thresholds)
            (cold if i == 0 else warm).append((time.perf_counter() - s) * 1000)
    q = statistics.quantiles
    print(
        json.dumps(
            {
                "faq_entries": len(faq),
                "faq_load_ms": round((t1 - t0) * 1000, 1),
                "matcher_build_ms": round((t2 - t1) * 1000, 1),
                "utterances": len(texts),
                "first_time_ms": {
                    "p50": round(statistics.median(cold), 2),
                    "p95": round(q(cold, n=20)[18], 2),
                },
                "repeat_ms": {
                    "p50": round(statistics.median(warm), 2),
                    "p95": round(q(warm, n=20)[18], 2),
                }
                if warm
                else None,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
