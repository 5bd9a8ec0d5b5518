"""Tests for one-shot and streaming resampling."""

import math

import numpy as np
import pytest

from voicebot.frames import AudioFrame
from voicebot.resample import StreamResampler, resample

RATES = [8000, 16000, 24000, 48000]
RATE_PAIRS = [(a, b) for a in [*RATES, 44100] for b in RATES if a != b]


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 12000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * window))
    return float(np.fft.rfftfreq(len(samples), 1.0 / rate)[np.argmax(spectrum)])


def stream_in_frames(resampler: StreamResampler, samples: np.ndarray, frame_ms: int = 20):
    step = resampler.from_rate * frame_ms // 1000
    chunks = [resampler.process(samples[i : i + step]) for i in range(0, len(samples), step)]
    return chunks, resampler.flush()


def stream_all(resampler: StreamResampler, samples: np.ndarray) -> np.ndarray:
    chunks, tail = stream_in_frames(resampler, samples)
    return np.concatenate([*chunks, tail])


@pytest.mark.parametrize(("from_rate", "to_rate"), [(8000, 16000), (48000, 16000)])
def test_one_khz_tone_keeps_its_frequency(from_rate: int, to_rate: int) -> None:
    out = resample(tone(1000.0, from_rate), from_rate, to_rate)
    assert out.dtype == np.int16
    assert len(out) == to_rate
    assert peak_frequency(out, to_rate) == pytest.approx(1000.0, abs=2.0)


@pytest.mark.parametrize(("from_rate", "to_rate"), RATE_PAIRS)
def test_tone_frequency_and_level_survive_every_rate_pair(from_rate: int, to_rate: int) -> None:
    x = tone(1000.0, from_rate)
    y = resample(x, from_rate, to_rate)
    assert peak_frequency(y, to_rate) == pytest.approx(1000.0, abs=2.0)
    # 1 kHz is in every passband here, so the RMS level is kept (edges excluded).
    core = slice(to_rate // 10, -to_rate // 10)
    rms_in = np.sqrt(np.mean(x.astype(float) ** 2))
    rms_out = np.sqrt(np.mean(y[core].astype(float) ** 2))
    assert rms_out == pytest.approx(rms_in, rel=0.01)


@pytest.mark.parametrize(("from_rate", "to_rate"), RATE_PAIRS)
@pytest.mark.parametrize("n", [1, 7, 160, 161, 12345])
def test_one_shot_length(from_rate: int, to_rate: int, n: int) -> None:
    out = resample(np.zeros(n, dtype=np.int16), from_rate, to_rate)
    assert len(out) == math.floor(n * to_rate / from_rate + 0.5)


def test_downsampling_removes_content_above_the_new_nyquist() -> None:
    # 6 kHz at 48 kHz must not alias into the 8 kHz band (it would show up at 2 kHz).
    out = resample(tone(6000.0, 48000), 48000, 8000)
    core = out[800:-800].astype(np.float64)
    assert np.sqrt(np.mean(core**2)) < 12000 * 0.01


def test_same_rate_is_an_exact_copy() -> None:
    x = tone(440.0, 16000, 0.1)
    out = resample(x, 16000, 16000)
    np.testing.assert_array_equal(out, x)
    assert out is not x


@pytest.mark.parametrize(("from_rate", "to_rate"), RATE_PAIRS)
def test_streaming_matches_one_shot(from_rate: int, to_rate: int) -> None:
    x = tone(1000.0, from_rate, seconds=0.5) // 2 + tone(3100.0, from_rate, seconds=0.5) // 4
    one_shot = resample(x, from_rate, to_rate)
    streamed = stream_all(StreamResampler(from_rate, to_rate), x)
    assert streamed.dtype == np.int16
    assert len(streamed) == len(one_shot)
    assert np.max(np.abs(streamed.astype(np.int32) - one_shot)) <= 1


def test_streaming_8k_to_16k_emits_twice_the_samples_overall() -> None:
    x = tone(1000.0, 8000, seconds=2.0)
    resampler = StreamResampler(8000, 16000)
    chunks, tail = stream_in_frames(resampler, x)
    assert len(chunks) == 100
    assert sum(len(c) for c in chunks) + len(tail) == 32000
    assert resampler.samples_out == 32000
    # soxr emits in blocks; before the flush at most ~250 ms may still be held back.
    assert sum(len(c) for c in chunks) >= 32000 - 4000


def test_streaming_preserves_frequency_across_frame_edges() -> None:
    x = tone(1000.0, 48000)
    out = stream_all(StreamResampler(48000, 16000), x)
    assert peak_frequency(out, 16000) == pytest.approx(1000.0, abs=2.0)
    # No clicks: the sample-to-sample step of a 1 kHz sine at 16 kHz stays below 2*pi*f/fs*A.
    max_step = 2 * np.pi * 1000 / 16000 * 12000
    assert np.max(np.abs(np.diff(out[100:-100].astype(np.int32)))) < max_step * 1.05


def test_same_rate_stream_is_pass_through() -> None:
    x = tone(440.0, 16000, 0.1)
    chunks, tail = stream_in_frames(StreamResampler(16000, 16000), x)
    assert all(len(c) == 320 for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), x)
    assert len(tail) == 0


def test_process_frame_carries_rate_and_stream_clock() -> None:
    resampler = StreamResampler(8000, 16000)
    x = tone(1000.0, 8000, seconds=0.4)
    outputs = []
    for i in range(20):
        frame = AudioFrame.from_samples(x[i * 160 : (i + 1) * 160], 8000, 5000.0 + 20.0 * i)
        outputs.append(resampler.process_frame(frame))
    outputs.append(resampler.flush_frame())
    assert all(f.sample_rate == 16000 for f in outputs)
    # Each output's timestamp is the start time plus the audio emitted before it.
    emitted = 0
    for frame in outputs:
        assert frame.timestamp_ms == pytest.approx(5000.0 + emitted / 16.0)
        emitted += frame.num_samples
    assert emitted == 6400


def test_process_frame_without_timestamps_gives_none() -> None:
    resampler = StreamResampler(16000, 8000)
    out = resampler.process_frame(AudioFrame(bytes(640), 16000))
    assert out.timestamp_ms is None
    assert out.sample_rate == 8000


def test_process_frame_rejects_wrong_rate() -> None:
    with pytest.raises(ValueError, match="8000 Hz"):
        StreamResampler(16000, 8000).process_frame(AudioFrame(bytes(320), 8000))


def test_flush_ends_the_stream_until_reset() -> None:
    resampler = StreamResampler(16000, 8000)
    resampler.process(tone(1000.0, 16000, 0.1))
    resampler.flush()
    assert len(resampler.flush()) == 0
    with pytest.raises(RuntimeError, match="reset"):
        resampler.process(np.zeros(320, dtype=np.int16))
    resampler.reset()
    assert resampler.samples_out == 0
    chunks, tail = stream_in_frames(resampler, tone(1000.0, 16000, 0.1))
    assert sum(len(c) for c in chunks) + len(tail) == 800


def test_reset_gives_the_same_output_as_a_fresh_resampler() -> None:
    x = tone(1000.0, 8000, 0.3)
    used = StreamResampler(8000, 16000)
    stream_in_frames(used, tone(300.0, 8000, 0.3))
    used.reset()
    np.testing.assert_array_equal(stream_all(used, x), stream_all(StreamResampler(8000, 16000), x))


def test_output_is_deterministic() -> None:
    x = tone(1000.0, 8000, 0.3) // 3 + tone(2500.0, 8000, 0.3) // 3
    np.testing.assert_array_equal(resample(x, 8000, 16000), resample(x, 8000, 16000))
    np.testing.assert_array_equal(
        stream_all(StreamResampler(24000, 8000), x), stream_all(StreamResampler(24000, 8000), x)
    )


def test_loud_signal_clips_instead_of_wrapping() -> None:
    # A full-scale square wave overshoots after filtering; int16 output must saturate.
    x = np.where(np.arange(8000) % 40 < 20, 32767, -32768).astype(np.int16)
    y = resample(x, 8000, 16000)
    assert y.max() == 32767
    assert y.min() == -32768
    # Wrapping would put large negative values right after large positive ones.
    assert np.max(np.abs(np.diff(y.astype(np.int32)))) < 65535


@pytest.mark.parametrize("bad", [0, -16000, 16000.5, True])
def test_invalid_rates_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="sample rate"):
        resample(np.zeros(10, dtype=np.int16), bad, 16000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample rate"):
        StreamResampler(16000, bad)  # type: ignore[arg-type]


def test_invalid_samples_are_rejected() -> None:
    with pytest.raises(TypeError, match="int16"):
        resample(np.zeros(10, dtype=np.float32), 8000, 16000)
    with pytest.raises(ValueError, match="mono"):
        StreamResampler(8000, 16000).process(np.zeros((10, 2), dtype=np.int16))
