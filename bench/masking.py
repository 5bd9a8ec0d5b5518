"""Benchmark: the worst case of masking a caller's words, on adversarial and fuzzed input.

Prints JSON: worst-case and p99 milliseconds per 100 characters (inputs shorter than 100
characters count as 100: an utterance is judged against the same budget), the worst
time for one utterance (the most masking can hold the event loop), per input family,
over generated adversarial inputs (repeated cue words, long digit and kanji-numeral runs,
kana readings, mixed scripts, up to 10,000 characters) and the fuzz corpus, with the CPU.

    python bench/masking.py [--repeat 5] [--corpus DIR ...] [--fuzz-seconds 60]

Each input is masked ``--repeat`` times by a fresh ``CallMasker`` and its median time
counts (a garbage collection in one repeat is not the masking's worst case).
``--fuzz-seconds`` also runs the atheris target (tests/fuzz_masking_target.py) and
reports its executions per second.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from privacy.masking import MAX_TEXT_CHARS, CallMasker  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "fuzz" / "masking"
LENGTHS = (100, 250, MAX_TEXT_CHARS, 1000, 10_000)
UNITS = {
    "cue_phone": "電話番号は",
    "cue_name": "名前は",
    "cue_birth": "生年月日は",
    "cue_address": "住所は",
    "cue_account": "口座番号は",
    "place_words": "市区町村",
    "building_words": "ハイツ",
    "intro_words": "やまだと申します",
    "ascii_digits": "0123456789",
    "spaced_digits": "1 - ",
    "no_separated_digits": "1の",
    "fullwidth_digits": "０１２３４５６７８９",
    "kanji_digits": "〇一二三四五六七八九",
    "positional_kanji": "千二百三十四",
    "katakana_readings": "ゼロイチニーサンヨンゴーロクナナハチキュー",
    "hiragana_readings": "ぜろいちにさんよんごろくななはちきゅう",
    "weak_kana": "にしくごよ",
    "halfwidth_katakana": "ｾﾞﾛｷｭｰ",
    "era_dates": "昭和45年3月2日",
    "kana_dates": "しょうわよんじゅうごねんさんがつふつか",
    "chome_ban_go": "1丁目2番3号",
    "hyphen_addresses": "2-8-1",
    "filler_digits": "1えーと",
    "spaced_filler_digits": "090 えー ",
    "long_pause_digits": "1、えーっと、あのー、えっと、",
    "weak_kana_between_digits": "1ゴ",
    "weak_kana_in_a_chain": "1、ゴ、",
    "fullwidth_spaces": "1\u3000",
    "invisible_between_digits": "1\u00ad\u200e",
    "combining_marks": "1\u0301",
    "odd_separators": "1~2_3*4=5+6[7]「8」",
    "to_between_groups": "12と",
    "confirmed_groups": "090です。",
    "confirmed_fillers": "12、はい、",
    "kana_go_between_digits": "いちごう",
    "relation_cues": "父の山田",
    "name_particles": "名前は山田で、",
    "latin_names": "名前はJohn ",
}
MIXED_POOL = (
    "0123456789０１２３４５６７８９〇一二三四五六七八九十百千万の-ー 、"
    "ぜろいちにさんよんごろくななはちきゅうゼロイチニーサンヨン"
    "年月日丁目番地号室電話番号名前住所生年月日昭和平成令和市区町村ハイツと申しますです"
    "えーとあのっまうんエート"
)


def adversarial() -> dict[str, list[str]]:
    """Input families, each at several lengths."""
    rng = random.Random(20261204)
    families: dict[str, list[str]] = {}
    for name, unit in UNITS.items():
        families[name] = [(unit * (n // len(unit) + 1))[:n] for n in LENGTHS]
    families["mixed_scripts"] = [
        "".join(rng.choice(MIXED_POOL) for _ in range(n)) for n in LENGTHS for _ in range(20)
    ]
    return families


def corpus(dirs: list[Path]) -> list[str]:
    texts = []
    for d in dirs:
        for path in sorted(d.iterdir()):
            if path.is_file():
                texts.extend(path.read_bytes().decode("utf-8", "replace").split("\x1e"))
    return texts


def timed(text: str, repeat: int) -> float:
    """Median milliseconds to mask ``text`` with a fresh per-call masker."""
    samples = []
    for _ in range(repeat):
        masker = CallMasker()
        started = time.perf_counter()
        masker.mask(text)
        samples.append(1000 * (time.perf_counter() - started))
    return statistics.median(samples)


def measure(texts: list[str], repeat: int) -> list[tuple[int, float]]:
    """(length, median ms) of each text."""
    return [(len(text), timed(text, repeat)) for text in texts]


def summary(timings: list[tuple[int, float]]) -> dict[str, float]:
    per_text = [ms for _, ms in timings]
    ordered = sorted(ms * 100 / max(n, 100) for n, ms in timings)
    return {
        "inputs": len(timings),
        "longest_chars": max(n for n, _ in timings),
        "worst_ms_per_100_chars": round(ordered[-1], 4),
        "p99_ms_per_100_chars": round(ordered[int(0.99 * (len(ordered) - 1))], 4),
        "worst_ms_per_utterance": round(max(per_text), 3),
    }


def fuzz(seconds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "tests" / "fuzz_masking_target.py"),
                tmp,
                str(CORPUS),
                f"-max_total_time={seconds}",
                "-max_len=4096",
                "-print_final_stats=1",
                f"-artifact_prefix={tmp}/",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
    stats = {k: float(v) for k, v in re.findall(r"stat::(\w+):\s+([\d.]+)", done.stderr)}
    return {
        "seconds": seconds,
        "passed": done.returncode == 0,
        "executions": int(stats.get("number_of_executed_units", 0)),
        "executions_per_s": stats.get("average_exec_per_sec", 0.0),
    }


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
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--corpus", type=Path, action="append", default=[])
    parser.add_argument("--fuzz-seconds", type=int, default=0)
    args = parser.parse_args()

    timings = {name: measure(texts, args.repeat) for name, texts in adversarial().items()}
    by_family = {name: summary(t) for name, t in timings.items()}
    fuzzed = corpus([CORPUS, *args.corpus])
    result = {
        "cpu": cpu_model(),
        "max_text_chars": MAX_TEXT_CHARS,
        "adversarial": summary([x for t in timings.values() for x in t]),
        "fuzz_corpus": summary(measure(fuzzed, args.repeat)),
        "worst_family": max(by_family, key=lambda n: by_family[n]["worst_ms_per_100_chars"]),
        "families": by_family,
    }
    if args.fuzz_seconds:
        result["fuzzing"] = fuzz(args.fuzz_seconds)
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
