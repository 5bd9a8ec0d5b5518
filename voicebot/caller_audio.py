"""The caller's recent audio, from which each utterance is cut for the recogniser.

Recognition runs on whole utterances (plus a little before and after the detected speech,
which VAD places late at the start and early at the end), sometimes on a sentence the
caller resumed after a pause, so a few seconds more than the longest utterance are kept.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from voicebot.resample import resample


class CallerAudio:
    """A rolling window of caller audio at the call's rate, cut at the recogniser's rate."""

    def __init__(
        self, rate: int, recognizer_rate: int, keep_ms: float, preroll_ms: int, tail_ms: int
    ) -> None:
        self.rate = rate
        self.recognizer_rate = recognizer_rate
        self.keep_ms = keep_ms
        self.preroll_ms = preroll_ms
        self.tail_ms = tail_ms
        self._history: deque[tuple[float, np.ndarray]] = deque()  # (start_ms, samples)
        self.end_ms = 0.0  # call time just after the newest sample

    def remember(self, start_ms: float, samples: np.ndarray) -> None:
        """Keep a frame; frames older than ``keep_ms`` are dropped."""
        self._history.append((start_ms, samples.copy()))
        self.end_ms = start_ms + 1000.0 * len(samples) / self.rate
        while self._history and self._history[0][0] < self.end_ms - self.keep_ms:
            self._history.popleft()

    def cut(self, start_ms: float, end_ms: float) -> np.ndarray:
        """Caller audio between two call times (with pre-roll and tail), for the recogniser."""
        lo = start_ms - self.preroll_ms
        hi = end_ms + self.tail_ms
        pieces = [
            (t, s) for t, s in self._history if t + 1000.0 * len(s) / self.rate > lo and t < hi
        ]
        if not pieces:
            return np.zeros(0, dtype=np.int16)
        first_t = pieces[0][0]
        audio = np.concatenate([s for _, s in pieces])
        a = max(0, int((lo - first_t) * self.rate / 1000))
        b = max(a, int((hi - first_t) * self.rate / 1000))
        audio = audio[a:b]
        if self.rate != self.recognizer_rate:
            audio = resample(audio, self.rate, self.recognizer_rate)
        return audio
