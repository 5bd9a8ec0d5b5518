"""Content words in dictionary form (SudachiPy).

Callers conjugate verbs freely (払えますか, 払い方, 払ったのに); comparing the
dictionary forms of content words (払う) generalises across those, and Sudachi's
normalised forms also unify spellings (引越し / 引っ越し).
"""

from __future__ import annotations

import threading
from functools import lru_cache

from sudachipy import Dictionary, Morpheme, SplitMode

_CONTENT_POS = {"名詞", "動詞", "形容詞", "形状詞", "接尾辞", "副詞"}
# Light verbs and nouns that occur in every question and say nothing about the topic.
_STOP = {
    "為る",
    "有る",
    "居る",
    "成る",
    "遣る",
    "下さる",
    "欲しい",
    "事",
    "物",
    "の",
    "方",
    "思う",
    "言う",
    "良い",
    "貰う",
    "頂く",
    "くれる",
    "今",
    "ちょっと",
    "どう",
    "そう",
}
_local = threading.local()
_dictionary_lock = threading.Lock()
_dictionary: Dictionary | None = None


def shared_dictionary() -> Dictionary:
    """The process's one Sudachi dictionary (its tokenizers are made per thread).

    The core dictionary is a 200 MB memory-mapped file, and matching touches most of it:
    each ``Dictionary`` maps it again and counts those pages again in the process's
    memory. pyopenjtalk-plus keeps one of its own for kanji it cannot read, so both use
    the same one: 155 instead of 270 MB resident after the matcher is built, and no more
    for every thread that matches.
    """
    global _dictionary
    with _dictionary_lock:
        if _dictionary is None:
            _dictionary = _one_with_pyopenjtalk()
        return _dictionary


def _one_with_pyopenjtalk() -> Dictionary:
    """pyopenjtalk-plus's dictionary, made here if it has none yet (same core dictionary,
    same default settings). Where its internals differ, each keeps its own."""
    try:
        from pyopenjtalk import utils
    except ImportError:
        return Dictionary(dict="core")
    lock = getattr(utils, "_SUDACHI_DICTIONARY_LOCK", None)
    if lock is None or not hasattr(utils, "_SUDACHI_DICTIONARY"):
        return Dictionary(dict="core")
    with lock:
        if utils._SUDACHI_DICTIONARY is None:
            utils._SUDACHI_DICTIONARY = Dictionary(dict="core")
        theirs = utils._SUDACHI_DICTIONARY
    return theirs if isinstance(theirs, Dictionary) else Dictionary(dict="core")


def _tokenizer():
    tok = getattr(_local, "tokenizer", None)
    if tok is None:
        tok = shared_dictionary().tokenizer(mode=SplitMode.A)
        _local.tokenizer = tok
    return tok


def tokenize(text: str) -> list[Morpheme]:
    """Sudachi morphemes (short units) of ``text``, with the tokenizer of this thread."""
    return list(_tokenizer().tokenize(text)) if text else []


@lru_cache(maxsize=65536)
def content_lemmas(text: str) -> tuple[str, ...]:
    """Dictionary forms of the content words of ``text``, in order."""
    if not text:
        return ()
    out = []
    for m in _tokenizer().tokenize(text):
        if m.part_of_speech()[0] in _CONTENT_POS:
            lemma = m.normalized_form()
            if lemma not in _STOP:
                out.append(lemma)
    return tuple(out)
