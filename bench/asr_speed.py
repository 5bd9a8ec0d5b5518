"""Benchmark: time of one Whisper recognition, by output vocabulary, beam and threads.

Recognises the first ``--clips`` dev fixtures (phone channel, 8 kHz μ-law, upsampled)
one by one, as a lone call would, and prints JSON: per setting the mean and p95 time of
a whole recognition, the part spent in the encoder, and how many transcripts differ from
the full vocabulary's at the same beam. The decoder's share is what the Japanese
vocabulary shrinks (each step reads the output projection: 51,865 rows or 6,053).

    python bench/asr_speed.py [--clips 40] [--beams 2 5] [--threads 1]
    python bench/asr_speed.py --turn-cost [--clips 40] [--fixtures DIR]

``--turn-cost`` compares what one caller turn costs a lone call, recognition and the
understanding's rating of its chosen hypothesis without the hint, in process CPU, for the
recogniser as it was (beam 5; the category hint and no hint decoded beside it at beam 5;
every hypothesis rated) and as it is (the settings' defaults: beam 3, no hint at beam 2
beside it, the chosen hypothesis rated when an answer needs it). Clips alternate between
the two, so that the machine's other work weighs on both alike.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from faq.store import load_faq  # noqa: E402
from voicebot.asr.whisper import (  # noqa: E402
    WhisperRecognizer,
    faq_category_prompt,
    faq_vocabulary_prompt,
)
from voicebot.bot import make_recognizer  # noqa: E402
from voicebot.config import Settings  # noqa: E402
from voicebot.resample import resample  # noqa: E402
from voicebot.understanding import Understanding  # noqa: E402
from voicebot.wavfile import read_wav  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "audio" / "dev"


def load_clips(limit: int, fixtures: Path = FIXTURES) -> list[np.ndarray]:
    with (fixtures / "manifest.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    # Alternate voices (or conditions) so a short run still has all.
    rows.sort(key=lambda r: (r["file"].split("/")[-1], r["file"]))
    clips = []
    for row in rows[:limit]:
        audio = read_wav(fixtures / row["file"])
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


def process_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return 1000.0 * (usage.ru_utime + usage.ru_stime)


def turn_cost(clips: list[np.ndarray]) -> dict[str, object]:
    """Process CPU of one lone turn (recognition, then the understanding), before and now."""
    settings = Settings()
    understanding = Understanding.load(settings)
    faq = understanding.faq
    prompt = faq_vocabulary_prompt(faq)
    before = WhisperRecognizer(
        initial_prompt=prompt,
        beam_size=5,
        busy_beam_size=5,  # the extra decodings used the main beam
        extra_prompts=(faq_category_prompt(faq), None),
        extras_on_demand=False,  # and were made with the main one, whatever it decided
    )
    now = make_recognizer(settings, faq)
    costs: dict[str, list[float]] = {"before": [], "now": []}
    walls: dict[str, list[float]] = {"before": [], "now": []}
    for rec in (before, now):
        rec.load()
        rec.transcribe_sync(clips[0])  # warm-up
    for clip in clips:
        for name, rec in (("before", before), ("now", now)):
            cpu, wall = process_cpu_ms(), time.perf_counter()
            t = rec.transcribe_sync(clip)
            if name == "before":
                t.unprompted.rate_all()  # every hypothesis was rated after decoding
            understanding.understand(t.text, t.alternatives, t.confidence, t.unprompted)
            costs[name].append(process_cpu_ms() - cpu)
            walls[name].append(1000.0 * (time.perf_counter() - wall))
    for rec in (before, now):
        rec.close()
    return {
        name: {
            "cpu_ms_per_turn_mean": round(statistics.mean(costs[name]), 1),
            "cpu_ms_per_turn_p95": round(float(np.percentile(costs[name], 95)), 1),
            "wall_ms_mean": round(statistics.mean(walls[name]), 1),
        }
        for name in costs
    } | {
        "cpu_ratio_now_to_before": round(
            statistics.mean(costs["now"]) / statistics.mean(costs["before"]), 3
        )
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--beams", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help="folder with manifest.tsv")
    parser.add_argument("--turn-cost", action="store_true", help="CPU per turn, before and now")
    args = parser.parse_args()

    clips = load_clips(args.clips, args.fixtures)
    if args.turn_cost:
        result = {"cpu": cpu_model(), "clips": len(clips), **turn_cost(clips)}
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
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
