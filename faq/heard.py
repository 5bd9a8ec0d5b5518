"""How the embedded recogniser hears the FAQ's own questions over a phone line.

Whisper base on 8 kHz phone audio errs in the same way again and again on the same words:
固定資産税 comes out as 古典市産税, 督促状 as 特則上. Readings (``faq.reading``) rescue the
errors that keep the sounds; the rest only match if the matcher has seen them. The table
``faq/data/heard.tsv`` holds what the recogniser made of every title and example question
of the shipped FAQ, spoken by Kokoro in even blends of two of its voices (no fixture uses a
blend, though each holds a stock voice) and passed through the same phone channel
(``bench/make_faq_asr_set.py --all --bot``). The matcher indexes each transcript as an
extra phrasing of the question it came from.

A row counts only while its entry still has that title or question word for word, so an
edited FAQ drops what no longer applies instead of matching stale phrasings.

The shipped table is three passes over the FAQ (each text once per pass, voices in turn),
concatenated (header once); then ``python bench/calibrate.py`` refits the confidence::

    B=".venv/bin/python bench/make_faq_asr_set.py --all --bot"
    $B --voices jm_kumo+jf_nezumi jf_alpha+jf_tebukuro jm_kumo+jf_gongitsune --out a.tsv
    $B --voices jf_alpha+jf_tebukuro jm_kumo+jf_gongitsune jm_kumo+jf_nezumi --out b.tsv
    $B --speed 0.9 --voices jm_kumo+jf_tebukuro jf_gongitsune+jf_nezumi jf_alpha+jf_nezumi \
        --out c.tsv

About 20 minutes a pass on two cores. The shipped passes were recognised with beam 2, the
recogniser's beam when they were made; it is now the beam under load (``busy_beam_size``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class HeardQuestion:
    """One recognition of one FAQ title or example question."""

    entry_id: str
    question: str  # as written in the FAQ
    heard: str  # as the recogniser wrote it


def default_heard_path() -> Path:
    return Path(str(resources.files("faq") / "data" / "heard.tsv"))


def load_heard(path: Path | None = None) -> list[HeardQuestion]:
    """Rows of a heard table (TSV with entry_id, question, transcript and optionally
    alternative). A missing file means none."""
    path = path or default_heard_path()
    if not path.exists():
        return []
    rows: list[HeardQuestion] = []
    seen: set[tuple[str, str, str]] = set()
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            for heard in (row.get("transcript") or "", row.get("alternative") or ""):
                heard = heard.strip()
                key = (row["entry_id"], row["question"], heard)
                if heard and key not in seen:
                    seen.add(key)
                    rows.append(HeardQuestion(*key))
    return rows
