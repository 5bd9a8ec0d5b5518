"""Make ``faq/data/onyomi.tsv``: the on'yomi of the Jōyō and Jinmeiyō kanji.

Source: the Unicode Han Database (Unihan) as Debian's ``unicode-data`` package installs
it (``/usr/share/unicode``): ``kJapaneseOn`` readings (Hepburn romaji, converted to
katakana) of the characters with ``kJoyoKanji`` or ``kJinmeiyoKanji``. Unihan is under
the Unicode License (permissive; its notice is kept in the table's header).

    apt-get install unicode-data
    python bench/make_onyomi_table.py [--unihan /usr/share/unicode] [--out faq/data/onyomi.tsv]

Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import bz2
import json
import re
import sys
from pathlib import Path

import jaconv

ROOT = Path(__file__).resolve().parent.parent
HEADER = """\
# kanji<TAB>on'yomi (katakana, as Unihan lists them) — made by bench/make_onyomi_table.py
# Data from the Unicode Han Database (Unihan), kJapaneseOn of kJoyoKanji/kJinmeiyoKanji.
# Copyright © 1991-2022 Unicode, Inc. Distributed under the Unicode License:
# https://www.unicode.org/license.txt
"""


def unihan_fields(path: Path, fields: set[str]):
    """(code point, field, value) rows of one Unihan file (plain or .bz2)."""
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and parts[1] in fields:
                yield parts


def find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.bz2"):
        if candidate.exists():
            return candidate
    raise SystemExit(f"{name}(.bz2) not found in {folder}: apt-get install unicode-data")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--unihan", type=Path, default=Path("/usr/share/unicode"))
    parser.add_argument("--out", type=Path, default=ROOT / "faq" / "data" / "onyomi.tsv")
    args = parser.parse_args()
    listed = {
        cp
        for cp, _, _ in unihan_fields(
            find(args.unihan, "Unihan_OtherMappings.txt"), {"kJoyoKanji", "kJinmeiyoKanji"}
        )
    }
    rows = []
    for cp, _, value in unihan_fields(find(args.unihan, "Unihan_Readings.txt"), {"kJapaneseOn"}):
        if cp in listed:
            kana = [jaconv.hira2kata(jaconv.alphabet2kana(r.lower())) for r in value.split()]
            if all(re.fullmatch(r"[ァ-ヶー]+", k) for k in kana):
                rows.append((chr(int(cp[2:], 16)), kana))
    rows.sort()
    args.out.write_text(
        HEADER + "".join(f"{k}\t{' '.join(v)}\n" for k, v in rows), encoding="utf-8"
    )
    print(json.dumps({"kanji": len(rows), "listed": len(listed), "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
