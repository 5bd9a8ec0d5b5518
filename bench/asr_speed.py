"""Benchmark: time of one Whisper recognition, by output vocabulary, beam and threads.

Recognises the first ``--clips`` dev fixtures (phone channel, 8 kHz μ-law, upsampled)
one by one, as a lone call would, and prints JSON: per setting the mean and p95 time of
a whole recognition, the part spent in the encoder, and how many transcripts differ from
the full vocabulary's at the same beam. The decoder's share is what the Japanese
vocabulary shrinks (each step reads the output projection: 51,865 rows or 6,053).

    python bench/asr_speed.py [--clips 40] [--beams 2 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from faq.store import load_faq  # noqa: E402
from voicebot.asr.whisper import WhisperRecognizer, faq_vocabulary_prompt  # noqa: E402
from voicebot.resample import resample  # noqa: E402
from voicebot.wavfile import read_wav  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "audio" / "dev"


def load_clips(limit: int) -> list[np.ndarray]:
    with (FIXTURES / "manifest.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    # Alternate voices so a short run still has both.
    rows.sort(key=lambda r: (r["file"].split("/")[1], r["file"]))
    clips = []
    for row in rows[:limit]:
        audio = read_wav(FIXTURES / row["file"])
        clips.append(resample(audio.samples, audio.sample_rate, 16000))
    return clips


def encode_ms(rec: WhisperRecognizer, clip: np.ndarray) -> float:
    """Time of the encoder alone on the window the recogniser would use."""
    import ctranslate2

    model = rec._model
    audio = np.asarray(clip, dtype=np.float32) / 32768.0
    frames = rec.window_frames(len(audio))
    padded = np.zeros(frames * 160, dtype=np.float32)
    padded[: len(audio)] = audio[: len(padded)]
    features = np.ascontiguousarray(model.feature_extractor(padded)[:, :frames][None])
    started = time.perf_counter()
    model.model.encode(ctranslate2.StorageView.from_array(features))
    return 1000.0 * (time.perf_counter() - started)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--beams", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    args = parser.parse_args()

    clips = load_clips(args.clips)
    prompt = faq_vocabulary_prompt(load_faq())
    results: dict[str, dict[str, object]] = {}
    texts: dict[tuple[str, int, int], list[str]] = {}
    for threads in args.threads:
        for vocabulary in ("full", "japanese"):
            rec = WhisperRecognizer(
                initial_prompt=prompt, cpu_threads=threads, vocabulary=vocabulary
            )
            rec.load()
            rec.transcribe_sync(clips[0])  # warm-up
            for beam in args.beams:
                rec.beam_size = rec.busy_beam_size = beam
                times, encodes, heard = [], [], []
                for clip in clips:
                    started = time.perf_counter()
                    heard.append(rec.transcribe_sync(clip).text)
                    times.append(1000.0 * (time.perf_counter() - started))
                    encodes.append(encode_ms(rec, clip))
                texts[(vocabulary, beam, threads)] = heard
                full = texts.get(("full", beam, threads), heard)
                differing = sum(a != b for a, b in zip(heard, full, strict=True))
                results[f"{vocabulary}/beam{beam}/threads{threads}"] = {
                    "mean_ms": round(statistics.mean(times), 1),
                    "p95_ms": round(float(np.percentile(times, 95)), 1),
                    "encode_mean_ms": round(statistics.mean(encodes), 1),
                    "decode_mean_ms": round(statistics.mean(times) - statistics.mean(encodes), 1),
                    "transcripts_differing_from_full": differing,
                }
                print(f"{vocabulary} beam {beam} threads {threads}: done", file=sys.stderr)
            rec.close()
    print(
        json.dumps(
            {"cpu": cpu_model(), "clips": len(clips), "results": results},
            ensure_ascii=False,
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
