"""Phone-line test signals with known speech boundaries, for VAD and endpointing tests.

Speech comes from espeak-ng's Japanese voice (kana input: it spells kanji out). Each clip is
trimmed to its audible span, so a signal built from clips and silences of known lengths has
exactly known speech boundaries. Signals are 8 kHz, get a background noise bed and go
through G.711 μ-law, like audio from a real phone line.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from voicebot import g711
from voicebot.resample import StreamResampler, resample
from voicebot.wavfile import parse_wav

LINE_RATE = 8000
FRAME_MS = 20
# Caller questions, in kana.
QUESTIONS = (
    "じゅうみんぜいの のうふしょを なくしてしまったのですが、さいはっこうは できますか",
    "こていしさんぜいの しはらいきげんを おしえてください",
    "けいじどうしゃぜいの しょうめいしょは どこで もらえますか",
    "ふるさとのうぜいの げんど がくを しりたいです",
)
# Audible span of a clip: samples above -40 dBFS. espeak's silences are digital zeros.
_AUDIBLE = 330


@cache
def speech_clip(kana: str, words_per_minute: int = 175) -> np.ndarray:
    """`kana` spoken by espeak-ng, at 8 kHz, trimmed to its audible span."""
    wav = subprocess.run(
        ["espeak-ng", "-v", "ja", "-s", str(words_per_minute), "--stdout", kana],
        check=True,
        capture_output=True,
    ).stdout
    audio = parse_wav(wav, name=f"espeak-ng {kana}")
    samples = resample(audio.samples, audio.sample_rate, LINE_RATE)
    audible = np.flatnonzero(np.abs(samples.astype(np.int32)) > _AUDIBLE)
    clip = samples[audible[0] : audible[-1] + 1]
    clip.flags.writeable = False
    return clip


def _ms_to_samples(ms: float) -> int:
    return round(ms * LINE_RATE / 1000)


@dataclass
class PhoneSignal:
    """An 8 kHz signal assembled piece by piece, remembering where the speech is."""

    pieces: list[np.ndarray] = field(default_factory=list)
    speech_spans_ms: list[tuple[float, float]] = field(default_factory=list)
    length: int = 0

    @property
    def duration_ms(self) -> float:
        return self.length * 1000 / LINE_RATE

    def silence(self, ms: float) -> PhoneSignal:
        return self._append(np.zeros(_ms_to_samples(ms), dtype=np.int16))

    def speech(self, clip: np.ndarray) -> PhoneSignal:
        start = self.duration_ms
        self._append(clip)
        self.speech_spans_ms.append((start, self.duration_ms))
        return self

    def noise_burst(self, ms: float, peak: int = 20000, seed: int = 1) -> PhoneSignal:
        """A loud burst of noise with a fast decay, like a cough or a knock on the handset."""
        n = _ms_to_samples(ms)
        burst = np.random.default_rng(seed).standard_normal(n) * np.exp(-np.arange(n) / (n / 4))
        return self._append(np.rint(burst / np.abs(burst).max() * peak).astype(np.int16))

    def click(self, peak: int = 30000) -> PhoneSignal:
        """A 2 ms click, like a line switching or a handset being moved."""
        n = _ms_to_samples(2)
        return self._append(np.rint(peak * np.hanning(n) * (-1.0) ** np.arange(n)).astype(np.int16))

    def render(self, noise_dbfs: float = -45.0, seed: int = 0) -> np.ndarray:
        """The signal with a background noise bed, through a μ-law encode and decode."""
        signal = np.concatenate(self.pieces).astype(np.float64)
        signal += line_noise(len(signal), noise_dbfs, seed)
        pcm = np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
        return g711.ulaw_decode(g711.ulaw_encode(pcm))

    def _append(self, samples: np.ndarray) -> PhoneSignal:
        self.pieces.append(samples)
        self.length += len(samples)
        return self


def line_noise(n: int, dbfs: float, seed: int = 0) -> np.ndarray:
    """Hiss plus low rumble (half each, in power) at an RMS level of `dbfs`."""
    rng = np.random.default_rng(seed)
    hiss = rng.standard_normal(n)
    rumble = np.cumsum(rng.standard_normal(n))
    rumble -= np.convolve(rumble, np.ones(400) / 400, mode="same")  # remove the drift
    rumble /= rumble.std() or 1.0
    noise = (hiss + rumble) / np.sqrt(2.0)
    return noise * 32768.0 * 10 ** (dbfs / 20)


def frames(samples: np.ndarray, rate: int, frame_ms: int = FRAME_MS) -> Iterator[np.ndarray]:
    """Split a signal into transport frames (the last one may be short)."""
    step = rate * frame_ms // 1000
    for start in range(0, len(samples), step):
        yield samples[start : start + step]


def vad_input_frames(line_audio: np.ndarray, vad_rate: int) -> Iterator[np.ndarray]:
    """Line frames as the VAD sees them: as-is at 8 kHz, or through the stream resampler."""
    if vad_rate == LINE_RATE:
        yield from frames(line_audio, LINE_RATE)
        return
    resampler = StreamResampler(LINE_RATE, vad_rate)
    for frame in frames(line_audio, LINE_RATE):
        yield resampler.process(frame)
