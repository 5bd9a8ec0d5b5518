"""A reading of wrong-kanji compounds by each kanji's on'yomi.

Whisper writes the sounds it hears with kanji that make no word (申告 → 進告, 車検 →
写権, 納付書 → 納不書). No dictionary has those compounds, so both reading
dictionaries read them kanji by kanji, and often by the native (kun) reading
(進告 → ススムツゲ, 写権 → ウツシケン) — while the recogniser chose each kanji for its
Sino-Japanese (on) sound. Reading such a run of single kanji by on'yomi gives back the
sounds the caller made (シンコク, シャケン, ノウフショ).

Kanji have several on'yomi (納: トウ, ノウ, ナ). Which one a recogniser means is the one
the FAQ's own words use: ``OnyomiReader`` learns that from the FAQ texts it is given
(納付, 納税 → ノウ); for a kanji the FAQ does not use, it takes the on'yomi the kanji has
as a word of its own (絵: エ), else the first listed reading.

The table ``data/onyomi.tsv`` (Jōyō and Jinmeiyō kanji) is made from the Unicode Han
Database by ``bench/make_onyomi_table.py``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from faq.morphology import tokenize
from faq.reading import kana_key, morpheme_sound

TABLE_FILE = Path(__file__).parent / "data" / "onyomi.tsv"
_ONE_KANJI = re.compile(r"^[\u4e00-\u9fff]$")


@lru_cache(maxsize=1)
def load_table(path: Path = TABLE_FILE) -> dict[str, tuple[str, ...]]:
    """Kanji → its on'yomi in katakana, in the table's order."""
    table: dict[str, tuple[str, ...]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            kanji, readings = line.split("\t")
            table[kanji] = tuple(readings.split())
    return table


def _everyday_on(kanji: str, ons: tuple[str, ...]) -> str:
    """The on'yomi of a kanji the FAQ does not use: the one it has as a word of its own
    (絵: エ, though the table lists カイ first), else the first listed.

    The table's order is not how often a reading is heard: 延滞金 written 絵体禁 read
    カイタイキン became 解体 (demolition), where the caller said エンタイキン.
    """
    alone = tokenize(kanji)
    if len(alone) == 1 and alone[0].reading_form() in ons:
        return alone[0].reading_form()
    return ons[0]


class OnyomiReader:
    """Reads runs of two or more single-kanji words by on'yomi, preferring the readings
    that ``texts`` (the FAQ) use."""

    def __init__(self, texts: Iterable[str], table: dict[str, tuple[str, ...]] | None = None):
        self.table = load_table() if table is None else table
        used: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for text in texts:
            for m in tokenize(text):
                word_reading = m.reading_form()
                for ch in m.surface():
                    for on in self.table.get(ch, ()):
                        if on in word_reading:
                            used[ch][on] += 1
        self.preferred = {
            kanji: (
                max(ons, key=lambda on, k=kanji: (used[k][on], -ons.index(on)))
                if used[kanji]
                else _everyday_on(kanji, ons)
            )
            for kanji, ons in self.table.items()
        }

    def key(self, text: str) -> str | None:
        """The sound key with unknown compounds read by on'yomi; None if ``text`` has none."""
        words = tokenize(text)
        out: list[str] = []
        found = False
        i = 0
        while i < len(words):
            j = i
            while j < len(words) and _ONE_KANJI.match(words[j].surface()):
                j += 1
            if j - i >= 2:  # kanji the dictionary knows only one by one
                found = True
                out += [self.preferred.get(w.surface()) or w.reading_form() for w in words[i:j]]
                i = j
                continue
            out.append(morpheme_sound(words[i]))
            i += 1
        if not found:
            return None
        return kana_key("".join(out)) or None
