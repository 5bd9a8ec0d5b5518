"""Rewriting callers' words to the FAQ's words.

Callers say 引き落とし, the FAQ says 口座振替; callers say ペイペイ, the FAQ says
スマホ決済. Rewriting variants to one canonical word before matching lets a
single keyword cover them all, on both sides (FAQ text and caller text).
"""

from __future__ import annotations

import re

from faq.normalize import nfkc

MIN_SOUND_KEY = 4


class SynonymRewriter:
    """Replaces every variant with its canonical word, longest variant first."""

    def __init__(self, groups: dict[str, list[str]]):
        table: dict[str, str] = {}
        for canonical, variants in groups.items():
            # The canonical word maps to itself so that a shorter variant inside it
            # (督促 inside 督促状) never rewrites it.
            table[nfkc(canonical)] = nfkc(canonical)
            for variant in variants:
                v = nfkc(variant).replace(" ", "")
                if v:
                    table.setdefault(v, nfkc(canonical))
        self._table = table
        self._re = (
            re.compile("|".join(map(re.escape, sorted(table, key=len, reverse=True))))
            if table
            else None
        )

    def __call__(self, text: str) -> str:
        if self._re is None:
            return text
        return self._re.sub(lambda m: self._table[m.group(0)], text)

    def by_sound(self) -> SynonymRewriter:
        """The same rewriting on sound keys, for words the recogniser wrote in kana or
        with the wrong kanji (シケンミンゼー for 市県民税). Short keys are left out: they
        occur inside too many other words."""
        from faq.reading import sound_key

        groups: dict[str, list[str]] = {}
        for variant, canonical in self._table.items():
            v, c = sound_key(variant), sound_key(canonical)
            if len(v) >= MIN_SOUND_KEY and v != c:
                groups.setdefault(c, []).append(v)
        rewriter = SynonymRewriter.__new__(SynonymRewriter)
        rewriter._table = {v: c for c, vs in groups.items() for v in vs}
        rewriter._re = (
            re.compile("|".join(map(re.escape, sorted(rewriter._table, key=len, reverse=True))))
            if rewriter._table
            else None
        )
        return rewriter
