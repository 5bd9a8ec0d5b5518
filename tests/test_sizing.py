"""The sizing bench against published Erlang B tables (15 E at 1 %: 24 lines; 7 E: 14)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "sizing.py"


def sizing(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_a_city_of_300000_calls_a_year_needs_24_lines_on_3_nodes_and_a_spare():
    result = sizing("--calls-per-year", "300000")
    assert result["busy_hour_erlangs"] == 15.0
    assert result["lines"] == 24  # Erlang B, 1 % blocking
    assert result["blocking_at_lines"] <= 0.01
    assert result["call_nodes"] == 3 and result["call_nodes_with_spare"] == 4


def test_fewer_calls_need_fewer_lines():
    result = sizing("--calls-per-year", "140000")
    assert result["busy_hour_erlangs"] == 7.0
    assert result["lines"] == 14


def test_an_impossible_blocking_target_is_refused_clearly():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--blocking", "0"], capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "blocking must be between 0 and 1" in out.stderr
