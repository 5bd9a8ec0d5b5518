"""Sample-rate conversion between telephone, recogniser and synthesiser rates (soxr).

The phone line runs at 8 kHz, recognisers want 16 kHz, synthesisers produce 22.05-48 kHz.
soxr's band-limited resampler keeps speech intelligible where naive interpolation would add
aliasing that hurts recognition.

Two entry points: `resample` for whole buffers (prompts, files) and `StreamResampler` for
live 20 ms frames, which keeps the filter state between frames so that frame edges do not
click.

Latency note: soxr works in internal blocks, so a stream does not return output for every
frame. Measured at "HQ" with 20 ms frames, the most audio held back at any moment is ~114 ms
for 8 <-> 16 kHz (output arrives as ~104 ms bursts every fifth frame), ~73 ms for
24 -> 8 kHz and ~37 ms for 48 -> 16 kHz; "LQ" roughly halves that, "QQ" (cubic, poor
quality) has none. Consumers must not assume one output chunk per input frame.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import soxr

from voicebot.frames import AudioFrame, as_pcm16

Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]
DEFAULT_QUALITY: Quality = "HQ"


def _check_rates(from_rate: int, to_rate: int) -> None:
    for name, rate in (("from_rate", from_rate), ("to_rate", to_rate)):
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
            raise ValueError(f"{name} must be a positive integer sample rate, got {rate!r}")


# soxr runs in float32 here: its own int16 output adds random TPDF dither, which would make
# the same input give different output on every run.
def _to_float(pcm: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pcm, dtype=np.float32) * np.float32(1.0 / 32768.0)


def _to_int16(signal: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(signal * np.float32(32768.0)), -32768, 32767).astype(np.int16)


def resample(
    samples: np.ndarray, from_rate: int, to_rate: int, quality: Quality = DEFAULT_QUALITY
) -> np.ndarray:
    """Resample a whole mono int16 buffer to n * to_rate / from_rate samples (halves round up).

    The filter delay is compensated, so output sample k lines up with time k / to_rate.
    """
    _check_rates(from_rate, to_rate)
    pcm = as_pcm16(samples)
    if from_rate == to_rate:
        return pcm.astype(np.int16, copy=True)
    return _to_int16(soxr.resample(_to_float(pcm), from_rate, to_rate, quality=quality))


class StreamResampler:
    """Resamples a live mono int16 stream frame by frame, keeping filter state between calls.

    Feed frames with `process` (or `process_frame`), and call `flush` once at the end of the
    stream to get the samples still held in the filter. The concatenated output matches
    `resample` on the whole signal to within a couple of LSB.
    """

    def __init__(self, from_rate: int, to_rate: int, quality: Quality = DEFAULT_QUALITY) -> None:
        _check_rates(from_rate, to_rate)
        self.from_rate = int(from_rate)
        self.to_rate = int(to_rate)
        self.quality = quality
        self._stream = self._new_stream()
        self._samples_out = 0
        self._start_ms: float | None = None
        self._flushed = False

    def _new_stream(self) -> soxr.ResampleStream | None:
        if self.from_rate == self.to_rate:
            return None  # pass-through: no filter, no delay
        return soxr.ResampleStream(
            self.from_rate, self.to_rate, 1, dtype="float32", quality=self.quality
        )

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next chunk; may return fewer (even zero) or more samples than expected."""
        if self._flushed:
            raise RuntimeError("StreamResampler was flushed; call reset() to start a new stream")
        pcm = as_pcm16(samples)
        if self._stream is None:
            out = pcm.astype(np.int16, copy=True)
        else:
            out = _to_int16(self._stream.resample_chunk(_to_float(pcm)))
        self._samples_out += len(out)
        return out

    def process_frame(self, frame: AudioFrame) -> AudioFrame:
        """Resample an `AudioFrame`; the output timestamp follows the samples actually emitted.

        The first frame's timestamp anchors the stream clock, so a frame that comes out
        after a burst carries the time of its first sample, not of the input frame.
        """
        if frame.sample_rate != self.from_rate:
            raise ValueError(
                f"frame is {frame.sample_rate} Hz but this resampler expects {self.from_rate} Hz"
            )
        if self._start_ms is None:
            self._start_ms = frame.timestamp_ms
        timestamp = self._output_timestamp_ms()
        return AudioFrame.from_samples(self.process(frame.samples), self.to_rate, timestamp)

    def flush(self) -> np.ndarray:
        """Return the samples still in the filter; the stream is finished afterwards."""
        if self._flushed:
            return np.zeros(0, dtype=np.int16)
        self._flushed = True
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        out = _to_int16(self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        self._samples_out += len(out)
        return out

    def flush_frame(self) -> AudioFrame:
        """`flush` as an `AudioFrame`, timestamped like `process_frame` output."""
        timestamp = self._output_timestamp_ms()
        return AudioFrame.from_samples(self.flush(), self.to_rate, timestamp)

    def reset(self) -> None:
        """Drop all state and start a new stream (e.g. after a call transfer)."""
        self._stream = self._new_stream()
        self._samples_out = 0
        self._start_ms = None
        self._flushed = False

    @property
    def samples_out(self) -> int:
        """Total output samples emitted since the stream started."""
        return self._samples_out

    def _output_timestamp_ms(self) -> float | None:
        if self._start_ms is None:
            return None
        return self._start_ms + self._samples_out * 1000.0 / self.to_rate
