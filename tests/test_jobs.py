"""Blocking work the call loop waits for (voicebot.jobs), on both kinds of call clock.

Live calls (``WallClock``): the work runs as an asyncio task while the loop goes on.
Recorded calls (``VirtualClock``): the work runs at once, and its result becomes visible
only when the virtual clock reaches the time the work took; jobs on one lane (one
worker, such as the recogniser) queue behind each other. The work here is real
coroutines and real threads; no part is replaced.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from voicebot.clock import VirtualClock, WallClock
from voicebot.jobs import Job


class RecognitionFailed(RuntimeError):
    """What a failing piece of work raises in these tests."""


async def value_after(event: asyncio.Event, value: str) -> str:
    await event.wait()
    return value


async def failing() -> str:
    raise RecognitionFailed("decoder crashed")


async def immediate(value: str) -> str:
    return value


# -- live clock -----------------------------------------------------------------------------------
def test_live_job_runs_beside_the_loop_and_gives_its_result_when_done() -> None:
    async def scenario() -> tuple[bool, bool, str, float]:
        clock = WallClock()
        release = asyncio.Event()
        job = await Job.start(clock, value_after(release, "住民税"))
        before = job.done()  # start() returned while the work still waits
        release.set()
        for _ in range(100):
            if job.done():
                break
            await asyncio.sleep(0)
        return before, job.done(), job.result(), job.started_ms

    before, after, result, started_ms = asyncio.run(scenario())
    assert not before
    assert after
    assert result == "住民税"
    assert started_ms >= 0.0


def test_live_job_error_is_raised_by_result() -> None:
    async def scenario() -> Job[str]:
        job = await Job.start(WallClock(), failing())
        while not job.done():
            await asyncio.sleep(0)
        return job

    job = asyncio.run(scenario())
    with pytest.raises(RecognitionFailed, match="decoder crashed"):
        job.result()


def test_live_job_cancel_stops_the_work_and_is_never_done() -> None:
    cancelled = []

    async def slow() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "never"

    async def scenario() -> tuple[bool, bool]:
        job = await Job.start(WallClock(), slow())
        await asyncio.sleep(0)  # let the work begin
        job.cancel()
        for _ in range(10):
            await asyncio.sleep(0)
        return job.cancelled, job.done()

    flagged, done = asyncio.run(scenario())
    assert flagged
    assert not done
    assert cancelled == [True]


# -- virtual clock --------------------------------------------------------------------------------
def test_virtual_job_result_is_visible_only_once_the_clock_has_moved_that_far() -> None:
    clock = VirtualClock(work_ms=300.0)
    clock.advance_to(1000.0)
    job = asyncio.run(Job.start(clock, immediate("納付書"), lane="asr"))
    assert (job.started_ms, job.ready_ms) == (1000.0, 1300.0)
    assert not job.done()
    clock.advance_to(1299.0)
    assert not job.done()
    clock.advance_to(1300.0)
    assert job.done()
    assert job.result() == "納付書"


def test_virtual_job_error_surfaces_through_result_when_its_time_comes() -> None:
    clock = VirtualClock(work_ms=200.0)
    job = asyncio.run(Job.start(clock, failing(), lane="asr"))  # start() itself does not raise
    assert job.ready_ms == 200.0
    assert not job.done()
    clock.advance_to(200.0)
    assert job.done()
    with pytest.raises(RecognitionFailed, match="decoder crashed"):
        job.result()


def test_jobs_on_one_lane_queue_and_other_lanes_run_beside_them() -> None:
    """Two recognitions started at the same moment on one recogniser finish one after the
    other; a synthesis on its own lane is not held up by them."""
    clock = VirtualClock(work_ms=100.0)
    clock.advance_to(500.0)

    async def start_all() -> list[Job[str]]:
        return [
            await Job.start(clock, immediate("first"), lane="asr"),
            await Job.start(clock, immediate("second"), lane="asr"),
            await Job.start(clock, immediate("voice"), lane="tts"),
        ]

    first, second, voice = asyncio.run(start_all())
    assert (first.ready_ms, second.ready_ms, voice.ready_ms) == (600.0, 700.0, 600.0)
    assert clock.lanes == {"asr": 700.0, "tts": 600.0}
    clock.advance_to(650.0)
    assert (first.done(), second.done(), voice.done()) == (True, False, True)
    clock.advance_to(700.0)
    assert second.done() and second.result() == "second"


def test_a_lane_that_went_idle_starts_the_next_job_at_its_own_start() -> None:
    clock = VirtualClock(work_ms=100.0)
    early = asyncio.run(Job.start(clock, immediate("early"), lane="asr"))
    clock.advance_to(1000.0)  # the recogniser has been idle since 100 ms
    late = asyncio.run(Job.start(clock, immediate("late"), lane="asr"))
    assert early.ready_ms == 100.0
    assert late.ready_ms == 1100.0


def test_work_ms_charges_lane_jobs_only_and_other_work_its_measured_time() -> None:
    """``work_ms`` makes a recorded call unfold the same on any machine, but only for the
    worker lanes: work outside a lane is charged what it really took (here a thread that
    sleeps 50 ms, so at least that)."""

    async def sleeps_50_ms() -> str:
        await asyncio.to_thread(time.sleep, 0.05)
        return "slept"

    clock = VirtualClock(work_ms=10.0)
    on_lane = asyncio.run(Job.start(clock, sleeps_50_ms(), lane="asr"))
    off_lane = asyncio.run(Job.start(clock, sleeps_50_ms()))
    assert on_lane.ready_ms == 10.0
    assert off_lane.ready_ms is not None and off_lane.ready_ms >= 50.0
    assert clock.lanes == {"asr": 10.0}  # a job without a lane books no lane


def test_without_work_ms_lane_jobs_are_charged_their_measured_time() -> None:
    async def sleeps_50_ms() -> str:
        await asyncio.to_thread(time.sleep, 0.05)
        return "slept"

    clock = VirtualClock()  # as `voicebot call` and the benchmarks run
    job = asyncio.run(Job.start(clock, sleeps_50_ms(), lane="asr"))
    assert job.ready_ms is not None and job.ready_ms >= 50.0
    assert clock.lanes["asr"] == job.ready_ms


def test_virtual_job_cancelled_is_never_done_even_when_its_time_has_come() -> None:
    clock = VirtualClock(work_ms=100.0)
    job = asyncio.run(Job.start(clock, immediate("stale"), lane="asr"))
    job.cancel()
    clock.advance_to(10_000.0)
    assert job.cancelled
    assert not job.done()
