"""Coverage-guided fuzzing of the masking (atheris), for a few seconds in the normal run.

The fuzzer runs in a subprocess (libFuzzer owns its process and exits on the first
failure) over the committed seed corpus in tests/data/fuzz/masking; new inputs go to a
temporary directory, never into the repository. The properties it checks are in
tests/fuzz_masking_target.py: masking never raises, takes a bounded time per character,
returns a sane length and lets no run of seven digits survive in any script.

MASKING_FUZZ_SECONDS sets the duration (default 5) for longer runs, e.g. 600 before a
release; bench/masking.py --fuzz-seconds reports executions per second.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "tests" / "fuzz_masking_target.py"
CORPUS = ROOT / "tests" / "data" / "fuzz" / "masking"


def rss_limit_mb(headroom_mb: int) -> int:
    """libFuzzer's memory limit for a child of this process: ``headroom_mb`` above this
    process's own peak, which Linux carries across exec into the child (man getrusage)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 + headroom_mb


def run_fuzzer(seconds: float, workdir: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Run the fuzz target for ``seconds``; the process and libFuzzer's final stats."""
    new = workdir / "corpus"
    new.mkdir(exist_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            str(new),
            str(CORPUS),
            f"-max_total_time={max(1, int(seconds))}",
            "-max_len=4096",
            "-print_final_stats=1",
            f"-rss_limit_mb={rss_limit_mb(1024)}",
            f"-artifact_prefix={workdir}/",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    stats = {k: float(v) for k, v in re.findall(r"stat::(\w+):\s+([\d.]+)", done.stderr)}
    return done, stats


def test_masking_survives_fuzzing(tmp_path):
    seconds = float(os.environ.get("MASKING_FUZZ_SECONDS", "5"))
    done, stats = run_fuzzer(seconds, tmp_path)
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("crash-"))
    assert done.returncode == 0, (crashes, done.stderr[-4000:])
    assert stats["number_of_executed_units"] > len(list(CORPUS.iterdir()))
    print(f"masking fuzz: {stats['average_exec_per_sec']:.0f} executions/s", file=sys.stderr)
