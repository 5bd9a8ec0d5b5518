"""Make reporting audio from a labelled set in voices and line conditions nothing was built from.

The recognitions table (``faq/data/heard.tsv``) and the caller fixtures were made with
Kokoro voices and their blends, on clean μ-law lines. Figures reported on the same voices
and the same line flatter the bot. This script speaks a labelled TSV (``utterance``,
``expected``) with another synthesis technology, Open JTalk's HMM voice (as pyopenjtalk-plus
ships it), and passes it through a telephone channel in one of two conditions:

``clean``  three speakers (the voice pitched down 3, as is, up 3 semitones), normal speed,
           8 kHz, 300–3400 Hz, μ-law.
``hard``   per utterance, drawn from a fixed seed: speed 0.8–1.2, pitch −6 to +6 semitones,
           one of babble (four other utterances of the set mixed behind), mains hum with
           harmonics, or none, at 12–20 dB SNR; a quiet (−32 dBFS), normal, or loud and
           clipped line; μ-law or A-law.

It writes ``OUT/<condition>/NNN.wav`` and ``OUT/manifest.tsv`` (file, voice, utterance,
expected, condition), which ``bench/call_accuracy.py --fixtures OUT`` plays as calls, and
prints JSON describing what it made. Run from the project root:

    python bench/make_eval_audio.py tests/data/eval/validation-utterances.tsv --out /tmp/val-audio
    python bench/make_eval_audio.py tests/data/eval/blind-utterances.tsv --out /tmp/blind-audio
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

from make_caller_audio import LINE_RATE, PADDING_MS, band_pass  # noqa: E402

from voicebot import g711  # noqa: E402
from voicebot.evaluation import read_labelled  # noqa: E402
from voicebot.resample import resample  # noqa: E402
from voicebot.wavfile import write_wav_g711  # noqa: E402

SEED = 20261204
CLEAN_PITCHES = (-3.0, 0.0, 3.0)
HUM_HZ = 50.0  # eastern Japan's mains; its odd harmonics leak into a phone line
LEVELS_DBFS = {"quiet": -32.0, "normal": -20.0, "loud": -6.0}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def speak(text: str, speed: float = 1.0, half_tone: float = 0.0) -> tuple[np.ndarray, int]:
    """Open JTalk speech as float samples in [-1, 1] and its rate."""
    import pyopenjtalk

    wave, rate = pyopenjtalk.tts(text, speed=speed, half_tone=half_tone)
    return np.asarray(wave, dtype=np.float64) / 32768.0, rate


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def hum(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    phases = rng.uniform(0, 2 * np.pi, 6)
    return sum(
        np.sin(2 * np.pi * HUM_HZ * k * t + p) / k
        for k, p in zip((1, 3, 5, 7, 9, 11), phases, strict=True)
    )


def babble(n: int, others: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    mix = np.zeros(n)
    for other in others:
        start = int(rng.integers(0, max(1, len(other) - 1)))
        piece = np.resize(np.roll(other, -start), n)
        mix += piece / (rms(piece) or 1.0)
    return mix


def to_line(wave: np.ndarray, rate: int, level_dbfs: float, law: str) -> np.ndarray:
    """Resample to 8 kHz, band-limit, set the level (clipping a loud line), G.711 round trip."""
    line = resample(np.clip(wave * 32767, -32768, 32767).astype(np.int16), rate, LINE_RATE)
    line = band_pass(line, LINE_RATE).astype(np.float64)
    line *= 10 ** (level_dbfs / 20) * 32768 / (rms(line) or 1.0)
    line = np.clip(np.rint(line), -32768, 32767).astype(np.int16)
    pad = np.zeros(PADDING_MS * LINE_RATE // 1000, dtype=np.int16)
    line = np.concatenate([pad, line, pad])
    if law == "alaw":
        return g711.alaw_decode(g711.alaw_encode(line))
    return g711.ulaw_decode(g711.ulaw_encode(line))


def hard_conditions(rng: np.random.Generator) -> dict:
    return {
        "speed": round(float(rng.uniform(0.8, 1.2)), 2),
        "half_tone": float(rng.choice([-6, -4, -2, 2, 4, 6])),
        "noise": str(rng.choice(["babble", "hum", "none"])),
        "snr_db": round(float(rng.uniform(12, 20)), 1),
        "level": str(rng.choice(list(LEVELS_DBFS))),
        "law": str(rng.choice(["ulaw", "alaw"])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("utterances", type=Path, help="labelled TSV: utterance, expected")
    parser.add_argument("--out", type=Path, required=True, help="folder for WAVs and manifest")
    parser.add_argument(
        "--conditions", nargs="+", choices=("clean", "hard"), default=["clean", "hard"]
    )
    parser.add_argument("--limit", type=int, help="only the first N utterances")
    args = parser.parse_args(argv)

    rows = read_labelled(args.utterances)[: args.limit]
    started = time.perf_counter()
    plain = [speak(text) for text, _ in rows]  # babble material, at the voice's own rate
    manifest: list[list[str]] = []
    counts: dict[str, dict[str, int]] = {}
    for condition in args.conditions:
        (args.out / condition).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(SEED)
        for number, (text, expected) in enumerate(rows, start=1):
            if condition == "clean":
                pitch = CLEAN_PITCHES[(number - 1) % len(CLEAN_PITCHES)]
                cond = {"speed": 1.0, "half_tone": pitch, "noise": "none", "level": "normal"}
                cond |= {"law": "ulaw", "snr_db": None}
            else:
                cond = hard_conditions(rng)
            wave, rate = speak(text, cond["speed"], cond["half_tone"])
            if cond["noise"] != "none":
                others = [plain[int(i)][0] for i in rng.choice(len(plain), 4)]
                noise = babble(len(wave), others, rng) if cond["noise"] == "babble" else None
                noise = hum(len(wave), rate, rng) if noise is None else noise
                noise *= rms(wave) / (rms(noise) or 1.0) / 10 ** (cond["snr_db"] / 20)
                wave = wave + noise
            line = to_line(wave, rate, LEVELS_DBFS[cond["level"]], cond["law"])
            name = f"{condition}/{number:03d}.wav"
            write_wav_g711(args.out / name, line, LINE_RATE, law=cond["law"])
            voice = f"openjtalk{cond['half_tone']:+.0f}"
            manifest.append([name, voice, text, expected, json.dumps(cond)])
            tally = counts.setdefault(condition, {})
            for key in ("noise", "level", "law"):
                tally[f"{key}={cond[key]}"] = tally.get(f"{key}={cond[key]}", 0) + 1
    with (args.out / "manifest.tsv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "voice", "utterance", "expected", "condition"])
        writer.writerows(manifest)
    print(
        json.dumps(
            {
                "utterances": str(args.utterances),
                "files": len(manifest),
                "conditions": counts,
                "seconds": round(time.perf_counter() - started, 1),
                "cpu": cpu_model(),
            },
            ensure_ascii=False,
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
