"""Tests for the G.711 codecs against the ITU-T G.191 reference behaviour.

The reference functions below are straight per-sample transliterations of ulaw_compress,
ulaw_expand, alaw_compress and alaw_expand from the ITU-T G.191 Software Tool Library
(g711.c), written independently of the vectorised tables under test.
"""

import numpy as np
import pytest

from voicebot import g711


def ref_ulaw_compress(linear: int) -> int:
    absno = ((~linear) >> 2) + 33 if linear < 0 else (linear >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x0008 - segno
    low_nibble = 0x000F - ((absno >> segno) & 0x000F)
    code = (high_nibble << 4) | low_nibble
    if linear >= 0:
        code |= 0x0080
    return code


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_compress(linear: int) -> int:
    ix = (~linear) >> 4 if linear < 0 else linear >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if linear >= 0:
        ix |= 0x0080
    return ix ^ 0x0055


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x0055) & 0x007F
    iexp = ix >> 4
    mant = ix & 0x000F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x0008
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


def test_ulaw_known_code_points() -> None:
    # 0xFF is +0 and 0x7F is -0: both decode to 0; 0 encodes to +0 and -1 to -0.
    assert g711.ulaw_decode(b"\xff\x7f").tolist() == [0, 0]
    assert g711.ulaw_encode(np.array([0, -1], dtype=np.int16)) == b"\xff\x7f"
    # Full scale: 0x80 / 0x00 are the largest positive / negative values.
    assert g711.ulaw_decode(b"\x80\x00").tolist() == [32124, -32124]
    assert g711.ulaw_encode(np.array([32767, -32768], dtype=np.int16)) == b"\x80\x00"
    # Smallest non-zero step: 0xFE / 0x7E decode to ±8.
    assert g711.ulaw_decode(b"\xfe\x7e").tolist() == [8, -8]


def test_alaw_known_code_points() -> None:
    # 0xD5 is the smallest positive value (+8), 0x55 its negative twin.
    assert g711.alaw_decode(b"\xd5\x55").tolist() == [8, -8]
    assert g711.alaw_encode(np.array([0, -1], dtype=np.int16)) == b"\xd5\x55"
    assert g711.alaw_decode(b"\xaa\x2a").tolist() == [32256, -32256]
    assert g711.alaw_encode(np.array([32767, -32768], dtype=np.int16)) == b"\xaa\x2a"


def test_ulaw_decode_matches_reference_for_all_codes() -> None:
    expected = [ref_ulaw_expand(int(c)) for c in ALL_CODES]
    assert g711.ulaw_decode(ALL_CODES).tolist() == expected


def test_alaw_decode_matches_reference_for_all_codes() -> None:
    expected = [ref_alaw_expand(int(c)) for c in ALL_CODES]
    assert g711.alaw_decode(ALL_CODES).tolist() == expected


def test_ulaw_encode_matches_reference_for_every_int16() -> None:
    expected = bytes(ref_ulaw_compress(int(x)) for x in ALL_INT16)
    assert g711.ulaw_encode(ALL_INT16) == expected


def test_alaw_encode_matches_reference_for_every_int16() -> None:
    expected = bytes(ref_alaw_compress(int(x)) for x in ALL_INT16)
    assert g711.alaw_encode(ALL_INT16) == expected


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)],
)
def test_decoded_values_are_fixed_points(encode, decode) -> None:
    # Every decoded level re-encodes to the same code (except the duplicate zero of μ-law).
    levels = decode(ALL_CODES)
    recoded = np.frombuffer(encode(levels), dtype=np.uint8)
    np.testing.assert_array_equal(decode(recoded), levels)


def test_tables_are_monotonic() -> None:
    for decode, encode in (
        (g711.ulaw_decode, g711.ulaw_encode),
        (g711.alaw_decode, g711.alaw_encode),
    ):
        roundtrip = decode(encode(ALL_INT16)).astype(np.int32)
        assert np.all(np.diff(roundtrip) >= 0)


def _sine(amplitude: float, n: int = 8000, freq: float = 1000.0, rate: int = 8000) -> np.ndarray:
    t = np.arange(n) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t + 0.3)).astype(np.int16)


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)],
)
def test_sine_round_trip_error_is_within_half_a_step(encode, decode) -> None:
    x = _sine(20000.0).astype(np.int32)
    y = decode(encode(x.astype(np.int16))).astype(np.int32)
    err = np.abs(y - x)
    # Quantisation step at magnitude m is at most ~m/16 (4 mantissa bits), so the error
    # is at most half of that plus the reference's truncation of the low bits.
    assert np.all(err <= np.abs(x) / 32 + 16)
    snr_db = 10 * np.log10(np.sum(x.astype(float) ** 2) / np.sum(err.astype(float) ** 2))
    # G.711 gives about 38 dB SNR for a loud sine.
    assert snr_db > 35


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)],
)
def test_quiet_sine_keeps_reasonable_snr(encode, decode) -> None:
    # The point of companding: a signal 40 dB down keeps almost the same SNR.
    x = _sine(200.0).astype(np.int32)
    y = decode(encode(x.astype(np.int16))).astype(np.int32)
    snr_db = 10 * np.log10(np.sum(x.astype(float) ** 2) / np.sum((y - x).astype(float) ** 2))
    assert snr_db > 25


def test_bytes_and_array_inputs_agree() -> None:
    x = _sine(12000.0, n=160)
    pcm = x.astype("<i2").tobytes()
    assert g711.ulaw_encode(pcm) == g711.ulaw_encode(x)
    assert g711.alaw_encode(pcm) == g711.alaw_encode(x)
    codes = g711.ulaw_encode(x)
    np.testing.assert_array_equal(
        g711.ulaw_decode(codes), g711.ulaw_decode(np.frombuffer(codes, np.uint8))
    )


def test_big_endian_array_is_encoded_by_value() -> None:
    x = _sine(12000.0, n=160)
    assert g711.ulaw_encode(x.astype(">i2")) == g711.ulaw_encode(x)


def test_lengths_are_preserved() -> None:
    x = _sine(5000.0, n=160)
    assert len(g711.ulaw_encode(x)) == 160
    assert len(g711.alaw_encode(x)) == 160
    assert g711.ulaw_decode(bytes(160)).shape == (160,)
    assert g711.ulaw_decode(b"").shape == (0,)
    assert g711.ulaw_decode(b"").dtype == np.int16


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="even"):
        g711.ulaw_encode(b"\x00\x01\x02")
    with pytest.raises(TypeError, match="int16"):
        g711.alaw_encode(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="uint8"):
        g711.ulaw_decode(np.zeros(4, dtype=np.int16))


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError):
        g711.ULAW_ENCODE_TABLE[0] = 0
