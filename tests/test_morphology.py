"""Sudachi in the matcher: content words, and one dictionary for the whole process."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from faq.morphology import content_lemmas, shared_dictionary, tokenize


def dictionary_mappings() -> int:
    """How many times Sudachi's system dictionary file is mapped into this process."""
    count = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        if re.search(r"sudachidict_core/resources/system\.dic$", line):
            count += 1
    return count


def test_content_words_in_dictionary_form():
    assert content_lemmas("税金はどうやって払えますか") == ("税金", "払う")


def test_one_dictionary_serves_every_thread_and_pyopenjtalk(understanding):
    """The 200 MB dictionary is mapped once, however many threads match text and although
    pyopenjtalk-plus reads unknown kanji with Sudachi too (it did while the matcher was
    built from the FAQ)."""
    from pyopenjtalk import utils

    assert understanding.match("固定資産税はいつ払いますか").top is not None
    heard: list[list[str]] = []
    worker = threading.Thread(
        target=lambda: heard.append([m.surface() for m in tokenize("納付書を再発行したい")])
    )
    worker.start()
    worker.join()
    assert heard and "納付" in "".join(heard[0])
    assert utils._SUDACHI_DICTIONARY is shared_dictionary()
    assert dictionary_mappings() == 1
