"""G.711 μ-law (PCMU) and A-law (PCMA) codecs, vectorised with lookup tables.

Telephone audio arrives and leaves as 8-bit G.711 codes at 8 kHz. Converting through a
256-entry decode table and a 65536-entry encode table (built once, at import) turns every
frame into a single numpy indexing operation, with no per-sample Python.

The tables follow the ITU-T G.191 Software Tool Library reference (g711.c): negative
inputs are quantised via their one's complement, so encoding is symmetric around -0.5 and
-1 encodes to "negative zero" (μ-law 0x7F, A-law 0x55). Decoded values are on the 16-bit
scale (μ-law peaks at ±32124, A-law at ±32256).
"""

from __future__ import annotations

import numpy as np

from voicebot.frames import as_pcm16

_PCM16 = np.dtype("<i2")


def _build_ulaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32)
    inverted = ~codes & 0xFF  # μ-law codes are transmitted inverted
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


def _build_alaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32)
    toggled = (codes ^ 0x55) & 0x7F  # A-law toggles the even bits
    exponent = toggled >> 4
    mantissa = toggled & 0x0F
    # Segment 0 is linear; higher segments have an implicit leading one.
    step = np.where(exponent > 0, (mantissa + 16) << 4, mantissa << 4) + 8
    magnitude = np.where(exponent > 1, step << np.maximum(exponent - 1, 0), step)
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


def _ones_complement_magnitude(values: np.ndarray) -> np.ndarray:
    return np.where(values < 0, ~values, values)


def _build_ulaw_encode_table() -> np.ndarray:
    linear = np.arange(-32768, 32768, dtype=np.int32)
    biased = np.minimum((_ones_complement_magnitude(linear) >> 2) + 33, 0x1FFF)
    # Segment = position of the highest set bit above bit 5 (biased >= 33 always).
    segment = np.floor(np.log2(biased >> 5)).astype(np.int32)
    mantissa = (biased >> (segment + 1)) & 0x0F
    code = 0x7F - ((segment << 4) | mantissa)
    code = np.where(linear >= 0, code | 0x80, code)
    return _index_by_uint16(linear, code)


def _build_alaw_encode_table() -> np.ndarray:
    linear = np.arange(-32768, 32768, dtype=np.int32)
    magnitude = _ones_complement_magnitude(linear) >> 4  # 12-bit magnitude
    # Segment 0 and 1 share the linear step; above that each segment doubles it.
    segment = np.where(magnitude > 15, np.floor(np.log2(np.maximum(magnitude, 1))) - 3, 0)
    segment = segment.astype(np.int32)
    mantissa = np.where(segment > 0, (magnitude >> np.maximum(segment - 1, 0)) & 0x0F, magnitude)
    code = (segment << 4) | mantissa
    code = np.where(linear >= 0, code | 0x80, code) ^ 0x55
    return _index_by_uint16(linear, code)


def _index_by_uint16(linear: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Reorder a table built over -32768..32767 so it is indexed by the uint16 bit pattern."""
    table = np.empty(65536, dtype=np.uint8)
    table[linear.astype(np.int16).view(np.uint16)] = code.astype(np.uint8)
    return table


ULAW_DECODE_TABLE = _build_ulaw_decode_table()
ALAW_DECODE_TABLE = _build_alaw_decode_table()
ULAW_ENCODE_TABLE = _build_ulaw_encode_table()
ALAW_ENCODE_TABLE = _build_alaw_encode_table()
for _table in (ULAW_DECODE_TABLE, ALAW_DECODE_TABLE, ULAW_ENCODE_TABLE, ALAW_ENCODE_TABLE):
    _table.flags.writeable = False


def _as_codes(codes: np.ndarray | bytes) -> np.ndarray:
    if isinstance(codes, bytes | bytearray | memoryview):
        return np.frombuffer(codes, dtype=np.uint8)
    array = np.asarray(codes)
    if array.dtype != np.uint8:
        raise TypeError(f"expected uint8 G.711 codes or bytes, got {array.dtype}")
    return array


def ulaw_encode(samples: np.ndarray | bytes) -> bytes:
    """Encode int16 samples (or 16-bit little-endian PCM bytes) to μ-law bytes."""
    pcm = as_pcm16(samples).astype(np.int16, copy=False)
    return ULAW_ENCODE_TABLE[pcm.view(np.uint16)].tobytes()


def alaw_encode(samples: np.ndarray | bytes) -> bytes:
    """Encode int16 samples (or 16-bit little-endian PCM bytes) to A-law bytes."""
    pcm = as_pcm16(samples).astype(np.int16, copy=False)
    return ALAW_ENCODE_TABLE[pcm.view(np.uint16)].tobytes()


def ulaw_decode(codes: np.ndarray | bytes) -> np.ndarray:
    """Decode μ-law bytes (or a uint8 array) to int16 samples."""
    return ULAW_DECODE_TABLE[_as_codes(codes)]


def alaw_decode(codes: np.ndarray | bytes) -> np.ndarray:
    """Decode A-law bytes (or a uint8 array) to int16 samples."""
    return ALAW_DECODE_TABLE[_as_codes(codes)]
