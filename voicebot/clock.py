"""Call clocks: wall time for live calls, virtual time for recorded ones.

A recorded call can run faster than real time and still report the latency a caller
would have had: the virtual clock advances with the audio (20 ms a frame) and with the
measured processing time of each piece of blocking work (see ``voicebot.jobs``).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Milliseconds since the call started."""

    realtime: bool

    def now_ms(self) -> float: ...


class WallClock:
    """Real time since construction."""

    realtime = True

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def now_ms(self) -> float:
        return (time.perf_counter() - self._start) * 1000.0


class VirtualClock:
    """Time that moves only when told: by audio frames and by measured work."""

    realtime = False

    def __init__(self, work_ms: float | None = None) -> None:
        """``work_ms``: charge each job on a worker lane (recognition) this long instead of
        its measured time, so that a recorded call unfolds the same way on a busy machine
        (tests); None measures, as `voicebot call` and the benchmarks do."""
        self._now = 0.0
        self.work_ms = work_ms
        self.lanes: dict[object, float] = {}  # worker -> virtual time it is busy until

    def now_ms(self) -> float:
        return self._now

    def advance_to(self, t_ms: float) -> None:
        """Move to ``t_ms`` (never backwards)."""
        self._now = max(self._now, t_ms)
