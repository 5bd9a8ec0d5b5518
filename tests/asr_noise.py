"""Corrupting text the way Japanese speech recognition does, for robustness tests.

Whisper mostly gets the sounds right and the spelling wrong: kanji replaced by
other kanji with the same reading (納付書 → 農夫書), words written in kana,
particles dropped, and hesitations kept. This reproduces those with a seeded RNG.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

import pyopenjtalk

_KANJI = re.compile(r"[\u4e00-\u9fff]")
_KANJI_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
_PARTICLE = re.compile(
    r"(?<=[\u4e00-\u9fff\u30a0-\u30ff])(を|が|は|に|で|の)(?=[\u4e00-\u9fff\u3040-\u30ff])"
)
FILLERS = ("えーと、", "あのー、", "えー、", "あの、すみません、")


def _common_kanji() -> list[str]:
    """First-level JIS kanji: the everyday set a recogniser would produce."""
    out = []
    for hi in range(0x88, 0x99):
        for lo in range(0x40, 0xFD):
            try:
                ch = bytes([hi, lo]).decode("shift_jis")
            except UnicodeDecodeError:
                continue
            if _KANJI.fullmatch(ch):
                out.append(ch)
    return out


@lru_cache(maxsize=1)
def homophone_table() -> dict[str, list[str]]:
    """Kanji -> other common kanji read the same way on their own."""
    by_reading: dict[str, list[str]] = {}
    for ch in _common_kanji():
        r = pyopenjtalk.g2p(ch, kana=True)
        if r:
            by_reading.setdefault(r, []).append(ch)
    table: dict[str, list[str]] = {}
    for chars in by_reading.values():
        for ch in chars:
            others = [c for c in chars if c != ch]
            if others:
                table[ch] = others
    return table


def corrupt(text: str, rng: random.Random) -> str:
    """One ASR-like corruption of ``text`` (deterministic for a given RNG state).

    A word written in kana gets its true reading (the recogniser heard the sounds);
    other kanji may be swapped for homophones; a particle may drop; a filler may lead.
    """
    out = text
    if rng.random() < 0.3:
        runs = list(_KANJI_RUN.finditer(out))
        if runs:
            m = rng.choice(runs)
            out = out[: m.start()] + pyopenjtalk.g2p(m.group(0), kana=True) + out[m.end() :]
    table = homophone_table()
    chars = list(out)
    positions = [i for i, c in enumerate(chars) if c in table]
    for i in rng.sample(positions, k=min(2, len(positions))):
        chars[i] = rng.choice(table[chars[i]])
    out = "".join(chars)
    if rng.random() < 0.5:
        particles = list(_PARTICLE.finditer(out))
        if particles:
            m = rng.choice(particles)
            out = out[: m.start()] + out[m.end() :]
    if rng.random() < 0.5:
        out = rng.choice(FILLERS) + out
    return out
