"""Coverage-guided fuzzing of the masking with atheris (libFuzzer), run by
tests/test_fuzz_masking.py in a subprocess; also usable by hand:

    .venv/bin/python tests/fuzz_masking_target.py /tmp/new-corpus tests/data/fuzz/masking \
        -max_total_time=600

An input is UTF-8 text; a record separator (0x1e) splits it into utterances of one call,
masked in order by one ``CallMasker``. Each utterance's masking must:

* never raise;
* take a bounded time per character (measured twice before it counts as too slow, so a
  garbage collection or a busy machine does not fail the run);
* return a sane length (each masked character becomes at most one token);
* leave no run of seven digits or more, in any script: neither literal digits (any
  Unicode digit, kanji digits) nor anything the canonical form reads as digits (kana
  readings, positional kanji numerals).
"""

from __future__ import annotations

import os
import sys
import time
import unicodedata

import atheris

with atheris.instrument_imports():
    from privacy.masking import MAX_TEXT_CHARS, OMITTED, TOKENS, CallMasker
    from privacy.spoken_numbers import canonical

# Time allowed per utterance: a floor plus a cost per character, both generous for the
# instrumented code; bench/masking.py measures the real figures.
FLOOR_S = float(os.environ.get("MASKING_FUZZ_FLOOR_MS", "20")) / 1000
PER_CHAR_S = float(os.environ.get("MASKING_FUZZ_PER_CHAR_MS", "0.5")) / 1000
LONGEST_TOKEN = max(len(t) for t in TOKENS)
KANJI_DIGITS = frozenset("〇○◯零一二三四五六七八九")
SEPARATORS = frozenset(" \t\n\r\u3000-ー－‐‑‒–—―−﹣のノ、,，.．・･()（）/／")
SEPARATORS |= frozenset("~〜～_＿*＊=＝+＋[]［］「」『』｢｣")
# Characters that show nothing, and spaces of any kind, count as separators too.
INVISIBLE = frozenset(("Cf", "Mn", "Me", "Zs"))
MAX_SEPARATORS = 5


def literal_digit_run(text: str) -> int:
    """The longest run of digit characters (any script), separators allowed between."""
    longest = run = gap = 0
    for ch in text:
        if ch in KANJI_DIGITS or unicodedata.digit(ch, None) is not None:
            run += 1
            gap = 0
            longest = max(longest, run)
        elif (
            (ch in SEPARATORS or unicodedata.category(ch) in INVISIBLE)
            and run
            and gap < MAX_SEPARATORS
        ):
            gap += 1
        else:
            run = gap = 0
    return longest


def check(utterance: str, masked: str, elapsed: float, remask) -> None:
    limit = FLOOR_S + PER_CHAR_S * min(len(utterance), MAX_TEXT_CHARS)
    if elapsed > limit:
        again = time.perf_counter()
        remask()
        elapsed = min(elapsed, time.perf_counter() - again)
        if elapsed > limit:
            raise AssertionError(f"{elapsed * 1000:.1f} ms for {len(utterance)} characters")
    kept = min(len(utterance), MAX_TEXT_CHARS)
    if len(masked) > kept * LONGEST_TOKEN + len(OMITTED) or (utterance and not masked):
        raise AssertionError(f"{len(masked)} characters out for {len(utterance)} in")
    if literal_digit_run(masked) >= 7:
        raise AssertionError(f"digits survive: {masked!r}")
    runs = [r.digits for r in canonical(masked).runs if len(r.digits) >= 7]
    if runs:
        raise AssertionError(f"digits survive as {runs}: {masked!r}")


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    masker = CallMasker()
    for utterance in text.split("\x1e"):
        state = masker._carry
        started = time.perf_counter()
        masked = masker.mask(utterance)
        elapsed = time.perf_counter() - started

        def remask(utterance: str = utterance, state=state) -> None:
            again = CallMasker()
            again._carry = state
            again.mask(utterance)

        check(utterance, masked, elapsed, remask)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
