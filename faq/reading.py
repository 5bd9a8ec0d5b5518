"""Katakana readings and sound keys.

Whisper often writes the right sounds with the wrong kanji (納付書 → 農夫書,
申告 → 新国). Comparing readings instead of spellings recovers those. The sound
key further folds long-vowel spellings (ノウ/ノー/ノ) that recognisers and the
reading dictionary write differently for the same sound.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import pyopenjtalk

log = logging.getLogger(__name__)

_HIRA_TO_KATA = {c: c + 0x60 for c in range(ord("ぁ"), ord("ゖ") + 1)}
_NON_KANA_RE = re.compile(r"[^ァ-ヶーa-z0-9]")
_FOLD = str.maketrans(
    {"ヲ": "オ", "ヅ": "ズ", "ヂ": "ジ", "ヴ": "ブ", "ヮ": "ワ", "ヵ": "カ", "ヶ": "ケ"}
)
_O_ROW = set("オコソトノホモヨロゴゾドボポョォ")
_E_ROW = set("エケセテネヘメレゲゼデベペェ")
_U_ROW = set("ウクスツヌフムユルグズブプュゥ")


def hira_to_kata(text: str) -> str:
    """Hiragana to katakana, everything else unchanged."""
    return text.translate(_HIRA_TO_KATA)


@lru_cache(maxsize=65536)
def reading(text: str) -> str:
    """Katakana pronunciation of ``text`` (pyopenjtalk), punctuation removed."""
    if not text:
        return ""
    try:
        kana = pyopenjtalk.g2p(text, kana=True, predict_nani=False, use_sudachi_kanji_yomi=False)
    except Exception:  # the dictionary is robust, but never let a reading break matching
        log.exception("reading failed for %r", text)
        kana = hira_to_kata(text)
    return _NON_KANA_RE.sub("", kana)


@lru_cache(maxsize=65536)
def sound_key(text: str) -> str:
    """A reading with vowel length folded: ノウフ, ノーフ and ノフ all become ノフ."""
    kana = reading(text).translate(_FOLD)
    out: list[str] = []
    for ch in kana:
        prev = out[-1] if out else ""
        if ch == "ー":
            continue
        if ch == "ウ" and (prev in _O_ROW or prev in _U_ROW):
            continue
        if ch == "イ" and prev in _E_ROW:
            continue
        out.append(ch)
    return "".join(out)


def reading_with_pauses(text: str) -> str:
    """Katakana reading of ``text`` that keeps its punctuation (for a kana-only voice)."""
    kana = pyopenjtalk.g2p(text, kana=True, predict_nani=False, use_sudachi_kanji_yomi=False)
    return kana.replace("’", "")
