"""Callers first: live synthesis goes ahead of background rendering on the same engine.

On a first start (or after an FAQ is published) the speech cache renders every answer in the
background, on the same few engine threads a call needs for an answer that is not rendered
yet. A caller waiting for that answer must not queue behind the background work, so each
synthesis carries a priority, taken from the context it was asked in: background rendering
marks its context (``background_rendering``), everything else is live. The engine's threads
take the most urgent waiting synthesis first.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

LIVE = 0  # a caller is waiting for it
BACKGROUND = 1  # rendering ahead of time

_priority: contextvars.ContextVar[int] = contextvars.ContextVar("synthesis_priority", default=LIVE)


def current_priority() -> int:
    """The priority of syntheses asked for in this context."""
    return _priority.get()


@contextlib.contextmanager
def background_rendering() -> Iterator[None]:
    """Syntheses asked for inside (and in tasks started inside) wait for live ones."""
    token = _priority.set(BACKGROUND)
    try:
        yield
    finally:
        _priority.reset(token)


class PriorityExecutor:
    """A fixed set of worker threads taking the most urgent job first (FIFO within a level)."""

    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: int, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` on a worker when no more urgent job is waiting."""
        future: Future[T] = Future()
        self._queue.put((priority, next(self._seq), (future, fn, args)))
        return future

    def _work(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # surfaced to whoever awaits the future
                future.set_exception(exc)

    def shutdown(self) -> None:
        """Finish the jobs already queued, then stop the workers."""
        for _ in self._threads:
            self._queue.put((BACKGROUND + 1, next(self._seq), None))  # after every job
        for thread in self._threads:
            thread.join()
