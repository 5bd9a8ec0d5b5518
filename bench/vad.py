"""Benchmark: VAD cost per window, and how long after the caller stops the turn is ended.

Prints JSON. Endpoint delay is measured the way a caller experiences it: from the true end
of speech in the signal to the end of the 20 ms transport frame whose processing emitted
SpeechEnd. It therefore includes Silero's hangover (it keeps rating speech for a while after
it ends), the 32 ms window buffering and, on the 16 kHz path, the stream resampler's delay.

Speech: espeak-ng Japanese questions and short answers, each placed at several sub-window
offsets, and the Kokoro caller fixtures under tests/data/audio/dev if they are there. All
of it is 8 kHz μ-law with background noise. Also reported: how often an utterance is split
into more than one turn (pauses inside it longer than the end silence), and how often an
80 ms fragment of speech, such as a short noise with voice in it, becomes a turn.

    python bench/vad.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from phone_signals import (  # noqa: E402
    FRAME_MS,
    LINE_RATE,
    QUESTIONS,
    PhoneSignal,
    speech_clip,
    vad_input_frames,
)

from voicebot.endpointing import (  # noqa: E402
    Endpointer,
    EndpointingConfig,
    ShortPause,
    SpeechEnd,
    SpeechStart,
)
from voicebot.resample import resample  # noqa: E402
from voicebot.vad import EnergyVad, SileroVad, VadWindow, VoiceActivityDetector  # noqa: E402
from voicebot.wavfile import read_wav  # noqa: E402

ANSWERS = ("はい", "いいえ", "そうです")
KOKORO_FIXTURES = ROOT / "tests" / "data" / "audio" / "dev"
END_SILENCES_MS = (250, 350, 500)
SHORT_PAUSE_MS = 180
OFFSETS_MS = (0, 7, 13, 21, 27)  # where speech starts inside a 32 ms window
NOISE_DBFS = (-45.0, -35.0)  # line noise; the speech is at about -20 dBFS
PASSES = 5
_AUDIBLE = 330  # as in tests/phone_signals.py


def window_cost(vad_class: type[VoiceActivityDetector], rate: int, seconds: float) -> dict:
    """Time per 32 ms window and per 20 ms frame over `seconds` of speech and noise.

    Best of PASSES, so that other processes on the machine do not inflate the figure.
    """
    clip = np.concatenate([speech_clip(q) for q in QUESTIONS])
    signal = PhoneSignal()
    while signal.duration_ms < seconds * 1000:
        signal.speech(clip).silence(1000)
    audio = signal.render()
    if rate != LINE_RATE:
        audio = resample(audio, LINE_RATE, rate)
    step = rate * FRAME_MS // 1000
    chunks = [audio[i : i + step] for i in range(0, len(audio), step)]
    t0 = time.perf_counter()
    vad = vad_class(rate)
    load_ms = (time.perf_counter() - t0) * 1000
    vad.process(chunks[0])  # first run warms up the runtime
    elapsed = float("inf")
    windows = 0
    for _ in range(PASSES):
        vad.reset()
        t0 = time.perf_counter()
        windows = sum(len(vad.process(c)) for c in chunks)
        elapsed = min(elapsed, time.perf_counter() - t0)
    return {
        "load_ms": round(load_ms, 1),
        "windows": windows,
        "us_per_window": round(elapsed / windows * 1e6, 1),
        "us_per_20ms_frame": round(elapsed / len(chunks) * 1e6, 1),
        "realtime_factor": round(elapsed / (len(audio) / rate), 5),
    }


def vad_windows(audio: np.ndarray, vad_rate: int) -> list[tuple[int, VadWindow]]:
    """(arrival_ms, window) for each window, arrival = end of the line frame that made it."""
    vad = SileroVad(vad_rate)
    return [
        ((index + 1) * FRAME_MS, window)
        for index, frame in enumerate(vad_input_frames(audio, vad_rate))
        for window in vad.process(frame)
    ]


def endpoint_events(windows: list[tuple[int, VadWindow]], config: EndpointingConfig) -> list:
    """(arrival_ms, event) for each endpointing event."""
    endpointer = Endpointer(config)
    return [
        (arrival, event)
        for arrival, window in windows
        for event in endpointer.update(window.end_ms, window.probability)
    ]


def speech_clips() -> dict[str, list[np.ndarray]]:
    clips = {"espeak": [speech_clip(text) for text in QUESTIONS + ANSWERS]}
    files = sorted(KOKORO_FIXTURES.glob("*/*.wav"))
    if files:
        kokoro = []
        for path in files:
            samples = read_wav(path).samples
            audible = np.flatnonzero(np.abs(samples.astype(np.int32)) > _AUDIBLE)
            kokoro.append(samples[audible[0] : audible[-1] + 1])
        clips["kokoro"] = kokoro
    return clips


def endpoint_delays(clips: list[np.ndarray], vad_rate: int, noise_dbfs: float) -> dict:
    """Start and end errors of the detected turn, and SpeechEnd delay per end silence."""
    end_delays: dict[int, list[float]] = {ms: [] for ms in END_SILENCES_MS}
    split: dict[int, int] = dict.fromkeys(END_SILENCES_MS, 0)
    pause_delays, hangovers, start_delays, start_errors = [], [], [], []
    runs = 0
    # Fewer offsets for a long list of clips: the figures are averages anyway.
    offsets = OFFSETS_MS if len(clips) < 20 else OFFSETS_MS[:1]
    for clip in clips:
        for offset in offsets:
            runs += 1
            signal = PhoneSignal().silence(1000 + offset).speech(clip).silence(1500)
            (true_start, true_end) = signal.speech_spans_ms[0]
            windows = vad_windows(signal.render(noise_dbfs), vad_rate)
            for end_silence_ms in END_SILENCES_MS:
                config = EndpointingConfig(
                    end_silence_ms=end_silence_ms,
                    short_pause_ms=SHORT_PAUSE_MS,
                    min_speech_ms=100,  # so that the short answers count as turns too
                )
                events = endpoint_events(windows, config)
                ends = [(t, e) for t, e in events if isinstance(e, SpeechEnd)]
                if len(ends) != 1:
                    split[end_silence_ms] += 1
                if not ends:
                    continue
                arrival, end = ends[-1]
                end_delays[end_silence_ms].append(arrival - true_end)
                if end_silence_ms != END_SILENCES_MS[-1]:
                    continue  # the rest does not depend on the end silence
                hangovers.append(end.last_speech_ms - true_end)
                start_errors.append(ends[0][1].speech_start_ms - true_start)
                starts = [t for t, e in events if isinstance(e, SpeechStart)]
                start_delays.append(starts[0] - true_start)
                pauses = [t for t, e in events if isinstance(e, ShortPause)]
                pause_delays.append(pauses[-1] - true_end)
    result: dict = {
        "runs": runs,
        "speech_start_event_delay_ms": _summary(start_delays),
        "speech_start_ms_minus_true_start": _summary(start_errors),
        "last_speech_ms_minus_true_end": _summary(hangovers),
        f"short_pause_{SHORT_PAUSE_MS}_delay_ms": _summary(pause_delays),
    }
    for ms in END_SILENCES_MS:
        result[f"end_silence_{ms}"] = {
            "speech_end_delay_ms": _summary(end_delays[ms]),
            "runs_not_one_turn": split[ms],
        }
    return result


def fragment_turn_rate(vad_rate: int, min_speech_ms: int) -> str:
    """How many 80 ms cuts from a question become a turn (Silero stretches them)."""
    question = speech_clip(QUESTIONS[0])
    config = EndpointingConfig(min_speech_ms=min_speech_ms)
    turns = runs = 0
    for start in range(2000, len(question) - 640, 2000):
        for offset in OFFSETS_MS:
            signal = PhoneSignal().silence(900 + offset).speech(question[start : start + 640])
            windows = vad_windows(signal.silence(1200).render(), vad_rate)
            events = endpoint_events(windows, config)
            runs += 1
            turns += any(isinstance(e, SpeechEnd) for _, e in events)
    return f"{turns}/{runs}"


def _summary(values: list[float]) -> dict | None:
    if not values:
        return None
    return {
        "mean": round(statistics.fmean(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="audio for the cost test")
    args = parser.parse_args()
    clips = speech_clips()
    result = {
        "window_cost": {
            f"{name}_{rate}": window_cost(cls, rate, args.seconds)
            for name, cls in (("silero", SileroVad), ("energy", EnergyVad))
            for rate in (8000, 16000)
        },
        "endpoint_delay": {
            f"{voice}_vad{rate}_noise{int(noise)}dBFS": endpoint_delays(voice_clips, rate, noise)
            for voice, voice_clips in clips.items()
            for rate in (8000, 16000)
            for noise in NOISE_DBFS
        },
        "fragment_80ms_becomes_turn": {
            f"vad{rate}_min_speech_{ms}": fragment_turn_rate(rate, ms)
            for rate in (8000, 16000)
            for ms in (250, 350)
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
