"""Turn detection end to end: espeak-ng speech on a noisy 8 kHz μ-law line, Silero, Endpointer.

The VAD runs at the line rate (8 kHz) and, as for recognition, at 16 kHz after the stream
resampler. Boundaries are checked against the known positions of the speech in the signal.
"""

from pathlib import Path

import numpy as np
import pytest
from phone_signals import LINE_RATE, QUESTIONS, PhoneSignal, speech_clip, vad_input_frames

from voicebot.endpointing import (
    Endpointer,
    EndpointEvent,
    EndpointingConfig,
    MaxLength,
    NoInput,
    ShortPause,
    SpeechDiscarded,
    SpeechEnd,
    SpeechStart,
)
from voicebot.vad import EnergyVad, SileroVad, VoiceActivityDetector
from voicebot.wavfile import read_wav

TOLERANCE_MS = 100
# Silero keeps rating speech for a while after it ends (its hangover): bench/vad.py measures
# up to ~175 ms on a -45 dBFS line and ~280 ms at -35 dBFS. The detected end may be that late.
HANGOVER_MS = 300


def near_end(last_speech_ms: float, true_end_ms: float) -> bool:
    return -TOLERANCE_MS / 2 <= last_speech_ms - true_end_ms <= HANGOVER_MS


def detect(
    audio: np.ndarray,
    vad: VoiceActivityDetector,
    config: EndpointingConfig | None = None,
    min_speech_ms: int | None = None,
    arm_no_input_at_ms: float | None = None,
) -> list[EndpointEvent]:
    endpointer = Endpointer(config, vad.window_ms)
    endpointer.set_min_speech_ms(min_speech_ms)
    if arm_no_input_at_ms is not None:
        endpointer.arm_no_input(arm_no_input_at_ms)
    events: list[EndpointEvent] = []
    for frame in vad_input_frames(audio, vad.sample_rate):
        for window in vad.process(frame):
            events += endpointer.update(window.end_ms, window.probability)
    return events


def of_type(events: list[EndpointEvent], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


@pytest.mark.parametrize("vad_rate", [8000, 16000])
@pytest.mark.parametrize("noise_dbfs", [-45.0, -35.0])
@pytest.mark.parametrize("question", QUESTIONS[:3])
def test_turn_boundaries_match_the_speech(vad_rate: int, noise_dbfs: float, question: str) -> None:
    signal = PhoneSignal().silence(1000).speech(speech_clip(question)).silence(1500)
    true_start, true_end = signal.speech_spans_ms[0]
    config = EndpointingConfig()
    events = detect(signal.render(noise_dbfs), SileroVad(vad_rate), config)

    (start,) = of_type(events, SpeechStart)
    (end,) = of_type(events, SpeechEnd)
    assert of_type(events, SpeechDiscarded) == []
    assert abs(end.speech_start_ms - true_start) <= TOLERANCE_MS
    assert start.speech_start_ms == end.speech_start_ms
    assert near_end(end.last_speech_ms, true_end)
    # The turn ends end_silence_ms after the last speech, to within one window.
    assert config.end_silence_ms <= end.at_ms - end.last_speech_ms < config.end_silence_ms + 32


@pytest.mark.parametrize("vad_rate", [8000, 16000])
def test_two_utterances_one_second_apart_are_two_turns(vad_rate: int) -> None:
    signal = (
        PhoneSignal()
        .silence(800)
        .speech(speech_clip(QUESTIONS[1]))
        .silence(1000)
        .speech(speech_clip(QUESTIONS[2]))
        .silence(1200)
    )
    events = detect(signal.render(), SileroVad(vad_rate))
    ends = of_type(events, SpeechEnd)
    assert len(of_type(events, SpeechStart)) == 2
    assert len(ends) == 2
    for end, (true_start, true_end) in zip(ends, signal.speech_spans_ms, strict=True):
        assert abs(end.speech_start_ms - true_start) <= TOLERANCE_MS
        assert near_end(end.last_speech_ms, true_end)


@pytest.mark.parametrize("vad_rate", [8000, 16000])
def test_300_ms_pause_is_one_turn_with_a_short_pause(vad_rate: int) -> None:
    signal = (
        PhoneSignal()
        .silence(800)
        .speech(speech_clip(QUESTIONS[1]))
        .silence(300)
        .speech(speech_clip(QUESTIONS[2]))
        .silence(1200)
    )
    (first_start, first_end), (_, second_end) = signal.speech_spans_ms
    config = EndpointingConfig(end_silence_ms=500, short_pause_ms=180)
    events = detect(signal.render(), SileroVad(vad_rate), config)
    (end,) = of_type(events, SpeechEnd)
    assert abs(end.speech_start_ms - first_start) <= TOLERANCE_MS
    assert near_end(end.last_speech_ms, second_end)
    # Recognition could have started speculatively in the pause, on the first clause.
    pauses = of_type(events, ShortPause)
    assert any(near_end(p.last_speech_ms, first_end) for p in pauses)
    assert all(p.at_ms < end.at_ms for p in pauses)


@pytest.mark.parametrize("vad_rate", [8000, 16000])
def test_clicks_and_an_80_ms_noise_burst_are_ignored(vad_rate: int) -> None:
    signal = (
        PhoneSignal()
        .silence(800)
        .click()
        .silence(600)
        .noise_burst(80)
        .silence(600)
        .click()
        .silence(40)
        .click()
        .silence(1000)
    )
    assert detect(signal.render(), SileroVad(vad_rate)) == []


@pytest.mark.parametrize("vad_rate", [8000, 16000])
def test_80_ms_of_speech_sound_is_not_a_turn(vad_rate: int) -> None:
    # A fragment of a vowel-rich stretch: what a cough with voice or a lip noise sounds like.
    question = speech_clip(QUESTIONS[0])
    for start in range(4000, 20001, 8000):
        fragment = question[start : start + 80 * LINE_RATE // 1000]
        signal = PhoneSignal().silence(900).speech(fragment).silence(1200)
        events = detect(signal.render(), SileroVad(vad_rate))
        assert of_type(events, SpeechEnd) == [], f"fragment at sample {start}"


@pytest.mark.parametrize("vad_rate", [8000, 16000])
def test_short_hai_is_a_turn_when_min_speech_is_lowered_for_a_yes_no_question(
    vad_rate: int,
) -> None:
    hai = speech_clip("はい", words_per_minute=250)
    assert len(hai) < 0.2 * LINE_RATE  # a short reply: under 200 ms
    signal = PhoneSignal().silence(1000).speech(hai).silence(1200)
    true_start, true_end = signal.speech_spans_ms[0]
    events = detect(signal.render(), SileroVad(vad_rate), min_speech_ms=100)
    (end,) = of_type(events, SpeechEnd)
    assert abs(end.speech_start_ms - true_start) <= TOLERANCE_MS
    assert near_end(end.last_speech_ms, true_end)


def test_no_input_fires_after_the_timeout_on_a_silent_line() -> None:
    signal = PhoneSignal().silence(2000).click().silence(2000).noise_burst(80).silence(6000)
    config = EndpointingConfig(no_input_ms=8000)
    events = detect(signal.render(), SileroVad(8000), config, arm_no_input_at_ms=500.0)
    (no_input,) = events
    assert isinstance(no_input, NoInput)
    assert 8500 <= no_input.at_ms < 8500 + 32


def test_no_input_does_not_fire_when_the_caller_answers() -> None:
    signal = PhoneSignal().silence(3000).speech(speech_clip(QUESTIONS[1])).silence(6000)
    config = EndpointingConfig(no_input_ms=5000)
    events = detect(signal.render(), SileroVad(8000), config, arm_no_input_at_ms=0.0)
    assert len(of_type(events, SpeechEnd)) == 1
    assert of_type(events, NoInput) == []


def test_max_length_ends_a_long_utterance_by_force() -> None:
    signal = PhoneSignal().silence(1000).speech(speech_clip(QUESTIONS[0])).silence(1000)
    true_start, true_end = signal.speech_spans_ms[0]
    config = EndpointingConfig(max_utterance_ms=2000)
    events = detect(signal.render(), SileroVad(8000), config)
    forced = of_type(events, MaxLength)
    assert abs(forced[0].at_ms - (true_start + 2000)) <= TOLERANCE_MS
    # Each forced end closes its turn at once; the rest of the question is a new utterance.
    for event in forced:
        following = events[events.index(event) + 1]
        assert isinstance(following, SpeechEnd)
        assert following.at_ms == event.at_ms
    ends = of_type(events, SpeechEnd)
    assert len(ends) == len(forced) + 1
    assert near_end(ends[-1].last_speech_ms, true_end)
    assert all(e.last_speech_ms - e.speech_start_ms < 2000 + 32 for e in ends)


def test_energy_fallback_still_finds_a_turn_on_a_quiet_line() -> None:
    signal = PhoneSignal().silence(1500).speech(speech_clip(QUESTIONS[1])).silence(1500)
    true_start, true_end = signal.speech_spans_ms[0]
    events = detect(signal.render(noise_dbfs=-50.0), EnergyVad(8000))
    (end,) = of_type(events, SpeechEnd)
    assert abs(end.speech_start_ms - true_start) <= TOLERANCE_MS
    assert near_end(end.last_speech_ms, true_end)


KOKORO_FIXTURES = Path(__file__).parent / "data" / "audio" / "dev"


@pytest.mark.parametrize("name", ["jf_alpha/001.wav", "jf_alpha/010.wav", "jm_kumo/005.wav"])
def test_kokoro_caller_fixture_is_found_between_its_audible_ends(name: str) -> None:
    path = KOKORO_FIXTURES / name
    if not path.exists():
        pytest.skip(f"caller fixture {name} not generated (tests/fixtures/make_caller_audio.py)")
    samples = read_wav(path).samples
    audible = np.flatnonzero(np.abs(samples.astype(np.int32)) > 330)
    signal = PhoneSignal().silence(1000).speech(samples[audible[0] : audible[-1] + 1])
    true_start, true_end = signal.silence(1500).speech_spans_ms[0]
    events = detect(signal.render(), SileroVad(8000))
    ends = of_type(events, SpeechEnd)
    # A long comma pause may split a question into two turns; the span must still match.
    assert 1 <= len(ends) <= 2
    assert abs(ends[0].speech_start_ms - true_start) <= TOLERANCE_MS
    assert near_end(ends[-1].last_speech_ms, true_end)
