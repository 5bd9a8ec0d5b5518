"""The frames transports hand to the call session: audio and key presses."""

import dataclasses

import numpy as np
import pytest

from voicebot.frames import AudioFrame, DtmfFrame, Frame, as_pcm16


def test_audio_frame_20ms_at_16k_has_320_samples_and_20ms() -> None:
    frame = AudioFrame(bytes(640), 16000, timestamp_ms=1000.0)
    assert frame.num_samples == 320
    assert frame.duration_ms == pytest.approx(20.0)
    assert frame.timestamp_ms == 1000.0
    assert frame.samples.dtype == np.dtype("<i2")
    assert not frame.samples.any()


def test_audio_frame_timestamp_defaults_to_none() -> None:
    assert AudioFrame(b"", 8000).timestamp_ms is None
    assert AudioFrame(b"", 8000).duration_ms == 0.0


def test_pcm_bytes_are_little_endian() -> None:
    frame = AudioFrame(bytes([0x01, 0x00, 0xFF, 0x7F, 0x00, 0x80]), 8000)
    assert frame.samples.tolist() == [1, 32767, -32768]


def test_from_samples_round_trips_through_bytes() -> None:
    rng = np.random.default_rng(1)
    samples = rng.integers(-32768, 32768, size=480, dtype=np.int16)
    frame = AudioFrame.from_samples(samples, 24000, timestamp_ms=20.0)
    assert frame.pcm == samples.astype("<i2").tobytes()
    np.testing.assert_array_equal(frame.samples, samples)
    assert frame.duration_ms == pytest.approx(20.0)


def test_from_samples_accepts_big_endian_and_stores_little_endian() -> None:
    big = np.array([1, -2, 300], dtype=">i2")
    frame = AudioFrame.from_samples(big, 8000)
    assert frame.pcm == bytes([1, 0, 0xFE, 0xFF, 0x2C, 0x01])


def test_from_samples_rejects_wrong_dtype_and_shape() -> None:
    with pytest.raises(TypeError, match="int16"):
        AudioFrame.from_samples(np.zeros(4, dtype=np.float32), 8000)
    with pytest.raises(TypeError, match="int16"):
        AudioFrame.from_samples(np.zeros(4, dtype=np.int32), 8000)
    with pytest.raises(ValueError, match="mono"):
        AudioFrame.from_samples(np.zeros((4, 2), dtype=np.int16), 8000)


def test_from_float_scales_by_32768_and_clips() -> None:
    frame = AudioFrame.from_float(np.array([0.0, 0.5, -0.5, -1.0, 1.0, 2.0, -3.0]), 16000)
    assert frame.samples.tolist() == [0, 16384, -16384, -32768, 32767, 32767, -32768]


def test_from_float_is_exact_inverse_of_int16_over_32768() -> None:
    ints = np.arange(-32768, 32768, 7, dtype=np.int16)
    frame = AudioFrame.from_float(ints.astype(np.float32) / 32768.0, 8000)
    np.testing.assert_array_equal(frame.samples, ints)


def test_samples_view_is_read_only() -> None:
    frame = AudioFrame(bytes(4), 8000)
    with pytest.raises(ValueError):
        frame.samples[0] = 1


@pytest.mark.parametrize("pcm", [b"\x00", b"\x00\x00\x00"])
def test_odd_byte_count_is_rejected(pcm: bytes) -> None:
    with pytest.raises(ValueError, match="even"):
        AudioFrame(pcm, 8000)


def test_non_bytes_pcm_is_rejected() -> None:
    with pytest.raises(TypeError, match="bytes"):
        AudioFrame(bytearray(4), 8000)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [0, -8000, 8000.0, True])
def test_invalid_sample_rate_is_rejected(rate: object) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        AudioFrame(bytes(2), rate)  # type: ignore[arg-type]


def test_numpy_integer_sample_rate_becomes_int() -> None:
    frame = AudioFrame(bytes(2), np.int64(48000))  # type: ignore[arg-type]
    assert type(frame.sample_rate) is int
    assert frame.sample_rate == 48000


def test_frames_are_frozen_and_slotted() -> None:
    frame = AudioFrame(bytes(2), 8000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.sample_rate = 16000  # type: ignore[misc]
    key = DtmfFrame("5")
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.digit = "6"  # type: ignore[misc]
    for made in (frame, key):
        assert "__slots__" in type(made).__dict__
        assert not hasattr(made, "__dict__")


def test_frames_are_frames_and_compare_by_value() -> None:
    """A transport's receive() gives either kind; the call session tells them apart by
    type, and a frame kept for the recording compares equal to an identical one."""
    assert isinstance(AudioFrame(b"", 8000), Frame) and isinstance(DtmfFrame("#"), Frame)
    assert AudioFrame(bytes(4), 8000, 20.0) == AudioFrame(bytes(4), 8000, 20.0)
    assert AudioFrame(bytes(4), 8000, 20.0) != AudioFrame(bytes(4), 8000, 40.0)
    assert AudioFrame(bytes(4), 8000) != AudioFrame(bytes(4), 16000)
    # Frames are hashable, so they can be used as keys or in sets.
    assert len({DtmfFrame("1"), DtmfFrame("1"), DtmfFrame("2")}) == 2


def test_as_pcm16_reads_bytes_little_endian_and_passes_int16_arrays_through() -> None:
    assert as_pcm16(bytes([0x01, 0x00, 0xFF, 0x7F])).tolist() == [1, 32767]
    assert as_pcm16(memoryview(bytes(4))).tolist() == [0, 0]
    samples = np.array([3, -4], dtype=np.int16)
    assert as_pcm16(samples) is samples  # no copy on the audio path


def test_as_pcm16_rejects_what_is_not_mono_16_bit_pcm() -> None:
    with pytest.raises(ValueError, match="even"):
        as_pcm16(b"\x00\x00\x00")
    with pytest.raises(TypeError, match="int16"):
        as_pcm16(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="mono"):
        as_pcm16(np.zeros((2, 2), dtype=np.int16))


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_all_dtmf_digits_are_accepted(digit: str) -> None:
    assert DtmfFrame(digit).digit == digit


@pytest.mark.parametrize("digit", ["", "10", "a", "E", "＃"])
def test_invalid_dtmf_digit_is_rejected(digit: str) -> None:
    with pytest.raises(ValueError, match="digit"):
        DtmfFrame(digit)
