"""Katakana readings and sound keys.

Whisper often writes the right sounds with the wrong kanji (納付書 → 農夫書,
申告 → 新国). Comparing readings instead of spellings recovers those. The sound
key further folds long-vowel spellings (ノウ/ノー/ノ) that recognisers and the
reading dictionary write differently for the same sound.

The recogniser's wrong kanji are often compounds no dictionary has (都知計課税 for
都市計画税). One reading dictionary then guesses readings that are not the sounds
heard (pyopenjtalk: ミヤコトモケイカゼイ), while another, splitting into short known
words, gets them (Sudachi: トチケイカゼイ) — and the other way round for other words.
``sound_keys`` therefore gives both readings' keys when they differ, and the matcher
takes whichever agrees with the FAQ.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache

import pyopenjtalk
from sudachipy import Morpheme

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
        log.exception("reading failed for a text of %d characters", len(text))  # not the words
        kana = hira_to_kata(text)
    return _NON_KANA_RE.sub("", kana)


@lru_cache(maxsize=65536)
def sound_key(text: str) -> str:
    """A reading with vowel length folded: ノウフ, ノーフ and ノフ all become ノフ."""
    return fold(reading(text))


@lru_cache(maxsize=65536)
def sound_keys(text: str) -> tuple[str, ...]:
    """The sound key by pyopenjtalk's reading, then by Sudachi's if it differs."""
    first = sound_key(text)
    second = kana_key(sudachi_reading(text))
    return (first,) if second == first or not second else (first, second)


# Sudachi spells the particles は and へ as written; they sound (and pyopenjtalk reads them) ワ, エ.
_PARTICLE_SOUND = {"は": "ワ", "へ": "エ"}


def morpheme_sound(m: Morpheme) -> str:
    """How a Sudachi morpheme sounds, in katakana (its surface if it has no reading)."""
    if m.part_of_speech()[0] == "助詞" and m.surface() in _PARTICLE_SOUND:
        return _PARTICLE_SOUND[m.surface()]
    return m.reading_form() or m.surface()


@lru_cache(maxsize=65536)
def word_readings(text: str) -> tuple[str, ...]:
    """Katakana reading of each of SudachiPy's short units of ``text``, in order."""
    from faq.morphology import tokenize

    return tuple(morpheme_sound(m) for m in tokenize(text))


def sudachi_reading(text: str) -> str:
    """Katakana reading by SudachiPy's short units (unknown compounds read by their parts)."""
    return "".join(word_readings(text))


@dataclass(frozen=True)
class WordSounds:
    """A text's sound key word by word (Sudachi's short units), with where words start
    and end in it. A sound found inside the key may straddle two words (障害, ショガイ,
    in 証明書が要る, ショメショ|ガ|イル); one that starts and ends where words do is a
    word or a run of words."""

    key: str
    bounds: frozenset[int]

    def has_word(self, sound: str) -> bool | None:
        """Whether ``sound`` occurs here from a word's start to a word's end; ``None``
        when it does not occur at all (this reading differs: nothing to judge by)."""
        i = self.key.find(sound)
        if i < 0:
            return None
        while i >= 0:
            if i in self.bounds and i + len(sound) in self.bounds:
                return True
            i = self.key.find(sound, i + 1)
        return False

    def unvoiced(self) -> WordSounds:
        """The same words with voicing marks dropped (see ``unvoice``)."""
        return WordSounds(unvoice(self.key), self.bounds)


@lru_cache(maxsize=65536)
def word_sounds(text: str) -> WordSounds:
    """The sound key of ``text`` built word by word, with the word boundaries in it."""
    parts = [kana_key(reading) for reading in word_readings(text)]
    bounds = {0}
    at = 0
    for part in parts:
        at += len(part)
        bounds.add(at)
    return WordSounds("".join(parts), frozenset(bounds))


def kana_key(kana: str) -> str:
    """The sound key of a reading already in kana (punctuation and symbols dropped)."""
    return fold(_NON_KANA_RE.sub("", hira_to_kata(kana)))


def fold(kana: str) -> str:
    """Vowel length and rare kana folded out of a katakana reading."""
    kana = kana.translate(_FOLD)
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


# Keys are folded first (ヴ → ブ, ヂ → ジ, ヅ → ズ), so those never reach this table.
_UNVOICE = str.maketrans(
    "ガギグゲゴザジズゼゾダデドバビブベボパピプペポ",
    "カキクケコサシスセソタテトハヒフヘホハヒフヘホ",
)


def unvoice(key: str) -> str:
    """A sound key with voicing marks dropped (ゾ → ソ, ド → ト, バ and パ → ハ): what is
    left when a recogniser hears the consonants but not whether they were voiced."""
    return key.translate(_UNVOICE)


def reading_with_pauses(text: str) -> str:
    """Katakana reading of ``text`` that keeps its punctuation (for a kana-only voice)."""
    kana = pyopenjtalk.g2p(text, kana=True, predict_nani=False, use_sudachi_kanji_yomi=False)
    return kana.replace("’", "")
