"""Benchmark: Whisper settings on the phone-channel fixtures — accuracy and time.

For each setting, every fixture clip (Kokoro voices, 8 kHz μ-law, upsampled to 16 kHz)
is recognised and compared with its text: character error rate on the surface, on the
sound key (readings, where wrong kanji do not count), and the matcher's top-1 on the
transcript, which is what the caller actually experiences. Prints JSON.

    python bench/asr_accuracy.py [--limit 60] [--settings pad0.5 full prompt ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

from rapidfuzz.distance import Levenshtein

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from faq.matcher import Matcher  # noqa: E402
from faq.normalize import nfkc, split_clauses  # noqa: E402
from faq.reading import sound_key  # noqa: E402
from faq.store import load_faq  # noqa: E402
from voicebot.asr.whisper import WhisperRecognizer, faq_vocabulary_prompt  # noqa: E402
from voicebot.resample import resample  # noqa: E402
from voicebot.wavfile import read_wav  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "audio" / "dev"


def plain(text: str) -> str:
    return "".join(split_clauses(nfkc(text)))


def cer(ref: str, hyp: str) -> float:
    return Levenshtein.distance(ref, hyp) / max(1, len(ref))


def settings(faq) -> dict[str, dict]:
    prompt = faq_vocabulary_prompt(faq)
    return {
        "pad0.5": {"pad_seconds": 0.5},
        "pad1.5": {"pad_seconds": 1.5},
        "full": {"pad_seconds": 30.0},
        "beam1": {"pad_seconds": 0.5, "beam_size": 1},
        "beam5": {"pad_seconds": 0.5, "beam_size": 5},
        "prompt": {"pad_seconds": 0.5, "initial_prompt": prompt},
        "prompt-full": {"pad_seconds": 30.0, "initial_prompt": prompt},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=0, help="clips per setting (0: all)")
    parser.add_argument("--settings", nargs="*", help="names of settings to run")
    args = parser.parse_args()
    faq = load_faq()
    matcher = Matcher(faq)
    with (FIXTURES / "manifest.tsv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    rows = rows[:: max(1, len(rows) // args.limit)] if args.limit else rows
    clips = []
    for row in rows:
        audio = read_wav(FIXTURES / row["file"])
        clips.append((row, resample(audio.samples, audio.sample_rate, 16000)))
    out = {"clips": len(clips), "settings": {}}
    chosen = settings(faq)
    for name in args.settings or list(chosen):
        rec = WhisperRecognizer(**chosen[name])
        rec.load()
        cers, kcers, times, top1 = [], [], [], []
        for row, samples in clips:
            started = time.perf_counter()
            text = rec.transcribe_sync(samples).text
            times.append((time.perf_counter() - started) * 1000)
            ref = plain(row["utterance"])
            cers.append(cer(ref, plain(text)))
            kcers.append(cer(sound_key(ref), sound_key(plain(text))))
            if not row["expected"].startswith("control."):
                top1.append(matcher.match(text).top.faq_id == row["expected"])
        rec.close()
        out["settings"][name] = {
            **{k: v for k, v in chosen[name].items() if k != "initial_prompt"},
            "prompt": "initial_prompt" in chosen[name],
            "cer": round(statistics.mean(cers), 3),
            "sound_key_cer": round(statistics.mean(kcers), 3),
            "matcher_top1": round(sum(top1) / len(top1), 3),
            "ms_median": round(statistics.median(times), 1),
            "ms_p95": round(statistics.quantiles(times, n=20)[18], 1),
        }
        print(name, out["settings"][name], file=sys.stderr, flush=True)
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
