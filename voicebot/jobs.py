"""Blocking work (recognition, synthesis) that the call loop waits for without stalling.

Live calls run the work as asyncio tasks and keep handling audio frames meanwhile.
Recorded calls run it at once, measure how long it took, and make the result visible
only when the virtual clock has moved that far: the conversation then unfolds as it
would have in real time, including audio that arrives while the work is running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Generic, TypeVar

from voicebot.clock import Clock

T = TypeVar("T")


class Job(Generic[T]):
    """One piece of work started at ``started_ms`` on the call clock."""

    def __init__(self, clock: Clock, started_ms: float):
        self.clock = clock
        self.started_ms = started_ms
        self.ready_ms: float | None = None  # virtual mode: when the result becomes visible
        self._task: asyncio.Task[T] | None = None
        self._result: T | None = None
        self._error: BaseException | None = None
        self.cancelled = False

    @classmethod
    async def start(cls, clock: Clock, work: Awaitable[T], lane: object = None) -> Job[T]:
        """Start ``work``. On a virtual clock, jobs on the same ``lane`` (one worker, e.g. the
        recogniser) queue behind each other, as they would on a live machine."""
        job: Job[T] = cls(clock, clock.now_ms())
        if clock.realtime:
            job._task = asyncio.ensure_future(work)
            return job
        began = time.perf_counter()
        try:
            job._result = await work
        except Exception as exc:  # surfaced by result()
            job._error = exc
        elapsed = (time.perf_counter() - began) * 1000.0
        fixed = getattr(clock, "work_ms", None)
        if fixed is not None and lane is not None:
            elapsed = fixed
        lanes: dict[object, float] = getattr(clock, "lanes", {})
        start = max(job.started_ms, lanes.get(lane, 0.0)) if lane is not None else job.started_ms
        job.ready_ms = start + elapsed
        if lane is not None:
            lanes[lane] = job.ready_ms
        return job

    def done(self) -> bool:
        """True once the result (or error) is available at the clock's current time."""
        if self.cancelled:
            return False
        if self._task is not None:
            return self._task.done()
        return self.ready_ms is not None and self.clock.now_ms() >= self.ready_ms

    def result(self) -> T:
        """The result; raises the work's exception if it failed."""
        if self._task is not None:
            return self._task.result()
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def cancel(self) -> None:
        """Forget this job (live work in a thread still finishes, but is ignored)."""
        self.cancelled = True
        if self._task is not None:
            self._task.cancel()
