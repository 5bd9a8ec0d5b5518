"""Callers first: live synthesis overtakes background rendering on the engine's threads."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from voicebot.tts.base import Speech
from voicebot.tts.cache import SpeechCache, split_sentences
from voicebot.tts.priority import (
    BACKGROUND,
    LIVE,
    PriorityExecutor,
    background_rendering,
    current_priority,
)


def test_a_live_job_overtakes_background_jobs_already_waiting():
    pool = PriorityExecutor(1, "test")
    gate = threading.Event()
    order: list[str] = []
    try:
        busy = pool.submit(BACKGROUND, gate.wait)  # the worker is busy with this one
        jobs = [
            pool.submit(BACKGROUND, order.append, "background 1"),
            pool.submit(BACKGROUND, order.append, "background 2"),
            pool.submit(LIVE, order.append, "live"),
        ]
        gate.set()
        for job in [busy, *jobs]:
            job.result(timeout=10)
    finally:
        pool.shutdown()
    assert order == ["live", "background 1", "background 2"]


def test_errors_reach_whoever_waits_and_the_worker_goes_on():
    pool = PriorityExecutor(1, "test")
    try:
        failing = pool.submit(LIVE, int, "not a number")
        with pytest.raises(ValueError):
            failing.result(timeout=10)
        assert pool.submit(LIVE, int, "42").result(timeout=10) == 42
    finally:
        pool.shutdown()


def test_the_priority_is_live_unless_the_context_says_background():
    assert current_priority() == LIVE
    with background_rendering():
        assert current_priority() == BACKGROUND
    assert current_priority() == LIVE


class Recording:
    """A synthesiser that records what it was asked, and at which priority."""

    engine, voice, sample_rate = "recording", "x", 8000

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def synthesize(self, text: str) -> Speech:
        self.calls.append((text, current_priority()))
        return Speech(np.full(800, len(self.calls), dtype=np.int16), self.sample_rate)


ANSWER = "一つ目の文です。二つ目の文です。三つ目です。"


def test_background_rendering_goes_sentence_by_sentence_at_background_priority(tmp_path):
    synth = Recording()
    cache = SpeechCache(synth, tmp_path, sentence_pause_ms=100.0)
    result = asyncio.run(cache.prerender([ANSWER]))
    assert result.rendered == 1
    sentences = split_sentences(ANSWER)
    assert synth.calls == [(s, BACKGROUND) for s in sentences]
    # Stored whole: the sentences joined by the engine's pause, and a cache hit from now on.
    stored = cache.get(ANSWER)
    assert stored is not None
    assert len(stored.samples) == 3 * 800 + 2 * 800  # 100 ms pauses at 8 kHz
    assert asyncio.run(cache.render(ANSWER)).samples.tolist() == stored.samples.tolist()
    assert len(synth.calls) == 3


def test_a_call_asking_for_uncached_text_is_live(tmp_path):
    synth = Recording()
    cache = SpeechCache(synth, tmp_path)
    asyncio.run(cache.render("二つ目の文です。"))
    assert synth.calls == [("二つ目の文です。", LIVE)]
