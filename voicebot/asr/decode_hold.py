"""A speculative recognition's decoding waits until the caller's pause has lasted.

Recognition starts at the caller's first short pause, so that it is usually finished when
the turn ends. Callers also pause inside their sentences: a third of the recognitions a
lone call made were speculations dropped because the caller went on, and a decoding, once
begun, cannot be interrupted. The encoder pass runs at once (its output is what makes a
speculation early); the decoding begins only when the pause has lasted ``decode_after_ms``
in all, or as soon as the turn ends there, whichever comes first. On a CPU whose encoder
pass takes about that long the wait costs nothing; on a faster one it delays the reply by
at most the rest of it.
"""

from __future__ import annotations

import threading
import time


class DecodeHold:
    """Holds a recognition's decoding until a deadline, or until released."""

    def __init__(self, wait_s: float) -> None:
        self._deadline = time.monotonic() + max(0.0, wait_s)
        self._go = threading.Event()

    def release(self) -> None:
        """Decode now: the turn ended here, or the recognition was dropped (its worker
        then finds it cancelled and stops)."""
        self._go.set()

    @property
    def released(self) -> bool:
        return self._go.is_set()

    def wait(self) -> None:
        """Block (in the recogniser's worker thread) until released or the deadline."""
        remaining = self._deadline - time.monotonic()
        if remaining > 0:
            self._go.wait(remaining)
