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


def _tokenizer():
    tok = getattr(_local, "tokenizer", None)
    if tok is None:
        tok = Dictionary(dict="core").tokenizer(mode=SplitMode.A)
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
