"""The frames a call's transport and its call session exchange.

A transport (SIP, WebRTC or a recorded WAV call, see ``voicebot.transport``) delivers the
caller's side as a stream of frames: ``AudioFrame`` for each 20 ms of audio and
``DtmfFrame`` for a key press. The call session (``voicebot.call``) reads them one at a
time and answers each audio frame with one ``AudioFrame`` of bot audio; after a transfer
to staff, ``telephony.bridge`` pumps the same frames between the caller's and the staff
member's transports. Frames are small, immutable values so that a frame can be kept (the
call's recording) or handed on without copying.

Audio in a frame is always 16-bit signed little-endian mono PCM. Transports convert their
wire format (G.711, Opus, WAV of any sample format) at the edge, so that the core never
has to guess.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

# Explicit little-endian int16, so byte layout does not depend on the host.
PCM16_DTYPE = np.dtype("<i2")
BYTES_PER_SAMPLE = PCM16_DTYPE.itemsize

DTMF_DIGITS = frozenset("0123456789*#ABCD")


def as_pcm16(samples: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    """1-D int16 samples from an int16 array or 16-bit PCM bytes; anything else is an error.

    Every function that takes audio (G.711, resampling, VAD) accepts both forms; checking
    them in one place keeps the error messages the same everywhere.
    """
    if isinstance(samples, bytes | bytearray | memoryview):
        if len(samples) % BYTES_PER_SAMPLE:
            raise ValueError(f"16-bit PCM needs an even number of bytes, got {len(samples)}")
        return np.frombuffer(samples, dtype=PCM16_DTYPE)
    array = np.asarray(samples)
    if array.dtype.kind != "i" or array.dtype.itemsize != BYTES_PER_SAMPLE:
        raise TypeError(f"expected int16 samples or PCM bytes, got {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"expected mono 1-D samples, got shape {array.shape}")
    return array


@dataclass(frozen=True, slots=True)
class Frame:
    """What a transport delivers: caller audio or a key press."""


@dataclass(frozen=True, slots=True)
class AudioFrame(Frame):
    """A chunk of 16-bit signed little-endian mono PCM audio.

    `pcm` stays as `bytes` because that is what transports read and write; `samples` gives a
    zero-copy numpy view for code that computes on the signal.
    """

    pcm: bytes
    sample_rate: int
    # Position of the first sample on the stream's clock, if the producer knows it.
    timestamp_ms: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pcm, bytes):
            raise TypeError(f"AudioFrame.pcm must be bytes, got {type(self.pcm).__name__}")
        if len(self.pcm) % BYTES_PER_SAMPLE:
            raise ValueError(
                f"AudioFrame.pcm has {len(self.pcm)} bytes; 16-bit PCM needs an even count"
            )
        rate = self.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, numbers.Integral) or rate <= 0:
            raise ValueError(f"AudioFrame.sample_rate must be a positive int, got {rate!r}")
        # numpy integers (e.g. from a header parsed with numpy) become plain ints.
        object.__setattr__(self, "sample_rate", int(rate))

    @classmethod
    def from_samples(
        cls, samples: np.ndarray, sample_rate: int, timestamp_ms: float | None = None
    ) -> AudioFrame:
        """Build a frame from a 1-D int16 array (any byte order)."""
        array = np.asarray(samples)
        if array.dtype.kind != "i" or array.dtype.itemsize != BYTES_PER_SAMPLE:
            raise TypeError(f"expected int16 samples, got {array.dtype}; use from_float for floats")
        if array.ndim != 1:
            raise ValueError(f"expected mono 1-D samples, got shape {array.shape}")
        return cls(array.astype(PCM16_DTYPE, copy=False).tobytes(), sample_rate, timestamp_ms)

    @classmethod
    def from_float(
        cls, samples: np.ndarray, sample_rate: int, timestamp_ms: float | None = None
    ) -> AudioFrame:
        """Build a frame from 1-D float samples in [-1.0, 1.0]; out-of-range values are clipped.

        Scaling by 32768 matches how sox and most codecs map int16 to float, so a float signal
        that came from int16 converts back exactly.
        """
        array = np.asarray(samples, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(f"expected mono 1-D samples, got shape {array.shape}")
        scaled = np.clip(np.rint(array * 32768.0), -32768, 32767).astype(PCM16_DTYPE)
        return cls(scaled.tobytes(), sample_rate, timestamp_ms)

    @property
    def num_samples(self) -> int:
        """Number of samples in the frame."""
        return len(self.pcm) // BYTES_PER_SAMPLE

    @property
    def duration_ms(self) -> float:
        """Length of the audio in milliseconds."""
        return self.num_samples * 1000.0 / self.sample_rate

    @property
    def samples(self) -> np.ndarray:
        """Read-only int16 view of the PCM bytes (no copy)."""
        return np.frombuffer(self.pcm, dtype=PCM16_DTYPE)


@dataclass(frozen=True, slots=True)
class DtmfFrame(Frame):
    """A keypad digit pressed by the caller (RFC 4733 on SIP, a data-channel message on
    WebRTC), decoded by the transport."""

    digit: str

    def __post_init__(self) -> None:
        if self.digit not in DTMF_DIGITS:
            raise ValueError(f"DtmfFrame.digit must be one of 0-9 * # A-D, got {self.digit!r}")
