"""Recognising a transcript that repeats the vocabulary hint instead of the caller.

On unclear audio (noise, a quiet line, a mumble) Whisper writes what its prompt suggests:
the FAQ titles it was given as a hint, in the hint's own order and with the hint's own
separators (「届く時期、住民税の天引き、年金からの住民税の天引き」). Matched against the
FAQ, such text finds its own titles and scores as a near-certain answer, though the caller
said nothing of the kind. A transcript like that is evidence of the hint, not of the
caller, and must count as unheard.

Two signs give an echo away, and a caller's question shows neither:
- a stretch of the hint that runs across one of its item separators (「時期、住民税の」):
  callers name a topic, they do not recite the end of one title and the start of the next;
- text made almost entirely of hint stretches, at least two of them, with nothing of its
  own (no 「を教えてください」, no 「んですが」);
- text that is one hint stretch and nothing else, decoded with a low probability: on
  silence, hum and line noise Whisper base writes 「住民税の天引き。」 at a mean token
  probability of 0.29–0.33, while a caller who says a topic's name is heard far more
  surely. ``ECHO_MAX_PROBABILITY`` lies above the noise echoes and below 98 % of the
  development recordings' first hypotheses (their 2nd percentile is 0.43; none of the few
  below it is a hint stretch).

Both are computed on characters without punctuation folding, in O(len(text) × len(hint))
for a transcript capped by the recogniser's token limit and a hint of a few hundred
characters at most.
"""

from __future__ import annotations

HINT_SEPARATORS = "、。"
MIN_RUN = 4  # shorter common stretches (税の, 住民税) are everyday words, not echoes
MIN_AFTER_SEPARATOR = 4  # 「窓口で」 after a comma is a caller's; 「住民税の」 is the hint's
MIN_BEFORE_SEPARATOR = 2
ECHO_COVERAGE = 0.8  # share of the transcript's characters inside hint stretches
ECHO_MAX_PROBABILITY = 0.45  # chosen on the development audio and on noise; see above
_IGNORED = " 　、。,.!?！？…"


def hint_runs(text: str, hint: str) -> list[str]:
    """The stretches of ``text`` that appear in ``hint`` (longest first at each position,
    left to right, at least ``MIN_RUN`` characters)."""
    runs: list[str] = []
    i = 0
    while i < len(text):
        length = _longest_in(text, i, hint)
        if length >= MIN_RUN:
            runs.append(text[i : i + length])
            i += length
        else:
            i += 1
    return runs


def _longest_in(text: str, start: int, hint: str) -> int:
    """Length of the longest prefix of ``text[start:]`` that occurs in ``hint``."""
    low, high = 0, len(text) - start
    # "occurs in hint" is monotone in the prefix length, so a binary search finds it.
    while low < high:
        mid = (low + high + 1) // 2
        if text[start : start + mid] in hint:
            low = mid
        else:
            high = mid - 1
    return low


def crosses_item(run: str) -> bool:
    """Whether a stretch of the hint runs from the end of one item into the next."""
    for k, ch in enumerate(run):
        if ch in HINT_SEPARATORS:
            before = sum(c not in _IGNORED for c in run[:k])
            after = sum(c not in _IGNORED for c in run[k + 1 :])
            if before >= MIN_BEFORE_SEPARATOR and after >= MIN_AFTER_SEPARATOR:
                return True
    return False


def echoes_hint(text: str, hint: str | None, probability: float | None = None) -> bool:
    """Whether ``text`` repeats ``hint`` rather than reporting what was said.

    ``probability`` is the recogniser's mean token probability for ``text``, if known.
    """
    if not hint or not text:
        return False
    runs = hint_runs(text, hint)
    if any(crosses_item(run) for run in runs):
        return True
    content = sum(c not in _IGNORED for c in text)
    covered = sum(c not in _IGNORED for run in runs for c in run)
    if not runs or covered < ECHO_COVERAGE * content:
        return False
    unsure = probability is not None and probability < ECHO_MAX_PROBABILITY
    return len(runs) >= 2 or unsure
