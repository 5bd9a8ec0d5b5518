"""Whisper's output vocabulary, restricted to what a Japanese transcript is written with.

Each decoding step of Whisper base reads every decoder weight, and the output projection
(51,865 tokens × 512) is the largest of them: on a 2-core AVX2 machine it was about a
third of the decoder's time (``bench/asr_speed.py``).
Three quarters of the vocabulary are Latin, Cyrillic, Hangul, Arabic… word pieces that a
Japanese tax call never needs. A restricted model keeps only the rows of the tokens kept
(kana, kanji, Japanese punctuation, digits, short Latin pieces, the byte pieces that spell
any character, and the special tokens up to ``<|notimestamps|>``), so each step is
cheaper. Token ids then differ from the tokenizer's: the model directory holds
``original_token_ids.json`` (the original id of each row) and :class:`OutputVocabulary`
translates both ways.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import numpy as np

from voicebot.asr.ct2_model_file import ModelFile, read_model_file, write_model_file

ORIGINAL_IDS_FILE = "original_token_ids.json"
VOCABULARY_FILE = "vocabulary.txt"
MODEL_FILE = "model.bin"
CONFIG_FILE = "config.json"
# Bump when the rule below changes, so that prepared models are derived again.
RULE_VERSION = 1
MAX_LATIN_LETTERS = 2  # "Q", "R", "Pa": enough to spell QR or an initialism, not English
FIRST_SPECIAL = "<|endoftext|>"
LAST_KEPT_SPECIAL = "<|notimestamps|>"  # timestamps are never asked for
# config.json fields that hold token ids
_ID_FIELDS = ("suppress_ids", "suppress_ids_begin", "lang_ids")

# Code points a Japanese transcript is written with, besides ASCII.
_JAPANESE_RANGES = (
    (0x2000, 0x206F),  # general punctuation: … ‥ ※ “ ”
    (0x2190, 0x21FF),  # arrows
    (0x25A0, 0x27BF),  # shapes, symbols, dingbats: ○ ● □ ★
    (0x3000, 0x30FF),  # CJK punctuation, hiragana, katakana
    (0x31F0, 0x31FF),  # small katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF00, 0xFFEF),  # full-width forms, half-width katakana
)

Progress = Callable[[int, int], None]


def _byte_pieces() -> dict[str, int]:
    """The byte-level BPE alphabet: each of the 256 bytes as the printable character the
    vocabulary file writes it with (printable Latin-1 bytes as themselves, the others
    shifted above U+0100 in byte order)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    pieces = {chr(b): b for b in printable}
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            pieces[chr(0x100 + shifted)] = byte
            shifted += 1
    return pieces


_BYTES_OF = _byte_pieces()


def token_bytes(token: str) -> bytes | None:
    """The bytes a vocabulary entry stands for; None for special tokens like <|ja|>."""
    try:
        return bytes(_BYTES_OF[ch] for ch in token)
    except KeyError:
        return None


def is_japanese_piece(token: str) -> bool:
    """Whether a text token can appear in a Japanese transcript.

    Kept: pieces made only of kana, kanji, Japanese and general punctuation, full-width
    forms, ASCII digits and symbols; pure-ASCII pieces with at most two letters; and every
    piece that is part of a multi-byte character (it may be a rare kanji's first bytes).
    Dropped: Latin words, and pieces of other scripts (Cyrillic, Hangul, Arabic, …).
    """
    data = token_bytes(token)
    if data is None:
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return True  # a fragment of a character
    if any(ch.isascii() and ch.isalpha() for ch in text):
        return text.isascii() and len(text.strip()) <= MAX_LATIN_LETTERS
    return all(ch.isascii() or _is_japanese_char(ch) for ch in text)


def _is_japanese_char(ch: str) -> bool:
    code = ord(ch)
    return any(low <= code <= high for low, high in _JAPANESE_RANGES)


def japanese_token_ids(vocabulary: list[str]) -> list[int]:
    """Ids to keep: Japanese text pieces, then the special tokens up to <|notimestamps|>."""
    try:
        first_special = vocabulary.index(FIRST_SPECIAL)
        last_special = vocabulary.index(LAST_KEPT_SPECIAL)
    except ValueError as exc:
        raise ValueError(f"not a Whisper vocabulary: {exc}") from exc
    text = [i for i in range(first_special) if is_japanese_piece(vocabulary[i])]
    return [*text, *range(first_special, last_special + 1)]


def restrict_model(source: Path, target: Path, progress: Progress | None = None) -> int:
    """Write into ``target`` a copy of the Whisper model in ``source`` that can only
    write Japanese; returns the number of tokens kept.

    ``target`` must be a new or empty directory; the caller renames it into place.
    The tokenizer is copied unchanged (text is decoded with the original ids).
    """
    source, target = Path(source), Path(target)
    vocabulary = (source / VOCABULARY_FILE).read_text(encoding="utf-8").splitlines()
    if (source / ORIGINAL_IDS_FILE).exists():
        raise ValueError(f"{source} is already restricted")
    keep = japanese_token_ids(vocabulary)
    rows = np.asarray(keep, dtype=np.int64)
    model = read_model_file(source / MODEL_FILE)
    for name, _, values in list(model.variables):
        on_vocabulary = name.startswith(("decoder/embeddings/", "decoder/projection/"))
        if on_vocabulary and values.ndim >= 1 and values.shape[0] == len(vocabulary):
            model.replace(name, np.asarray(values[rows]))
    target.mkdir(parents=True, exist_ok=True)
    with (target / MODEL_FILE).open("wb") as out:
        write_model_file(model, _CountingWriter(out, _model_bytes(model), progress))

    row_of = {original: row for row, original in enumerate(keep)}
    config = json.loads((source / CONFIG_FILE).read_text(encoding="utf-8"))
    for field in _ID_FIELDS:
        if isinstance(config.get(field), list):
            config[field] = [row_of[i] for i in config[field] if i in row_of]
    (target / CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
    (target / VOCABULARY_FILE).write_text(
        "".join(vocabulary[i] + "\n" for i in keep), encoding="utf-8"
    )
    (target / ORIGINAL_IDS_FILE).write_text(json.dumps(keep), encoding="utf-8")
    written = {MODEL_FILE, CONFIG_FILE, VOCABULARY_FILE, ORIGINAL_IDS_FILE}
    for extra in sorted(source.iterdir()):  # tokenizer.json, a preprocessor config
        if extra.is_file() and not extra.name.startswith(".") and extra.name not in written:
            shutil.copy2(extra, target / extra.name)
    return len(keep)


def _model_bytes(model: ModelFile) -> int:
    return sum(values.nbytes for _, _, values in model.variables)


class _CountingWriter:
    """A binary file wrapper that reports bytes written to a progress callback."""

    def __init__(self, out: IO[bytes], total: int, progress: Progress | None) -> None:
        self._out = out
        self._total = total
        self._done = 0
        self._progress = progress

    def write(self, data: bytes) -> int:
        written = self._out.write(data)
        self._done += len(data)
        if self._progress is not None:
            self._progress(min(self._done, self._total), self._total)
        return written


class OutputVocabulary:
    """Translation between tokenizer ids and a (possibly restricted) model's row ids."""

    def __init__(self, original_ids: list[int] | None = None) -> None:
        self.original_ids = original_ids
        self._to_model = (
            {orig: row for row, orig in enumerate(original_ids)} if original_ids else None
        )

    @classmethod
    def of_model(cls, model_dir: Path) -> OutputVocabulary:
        """The model's vocabulary map: identity unless the directory holds a restriction."""
        path = Path(model_dir) / ORIGINAL_IDS_FILE
        if not path.is_file():
            return cls()
        return cls([int(i) for i in json.loads(path.read_text(encoding="utf-8"))])

    @property
    def restricted(self) -> bool:
        return self._to_model is not None

    def to_model(self, ids: Iterable[int], *, drop_missing: bool = False) -> list[int]:
        """Tokenizer ids to model rows; ids the model lacks are dropped or raise KeyError."""
        if self._to_model is None:
            return list(ids)
        if drop_missing:
            return [self._to_model[i] for i in ids if i in self._to_model]
        return [self._to_model[i] for i in ids]

    def to_original(self, rows: Iterable[int]) -> list[int]:
        """Model rows back to tokenizer ids (for decoding the text)."""
        if self.original_ids is None:
            return list(rows)
        return [self.original_ids[r] for r in rows]
