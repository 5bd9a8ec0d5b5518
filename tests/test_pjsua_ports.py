"""The audio ports of SIP calls (telephony/pjsua_call.py) torn down while pjmedia's clock
thread is calling them, with real pjsua2 (tests/pjsua_port_race.py, in a process of its
own: pjsua is one per process, and a lost race kills the process).

Each round connects two ports as a call's two directions, lets the clock carry frames,
then ends the call while the clock thread waits for the GIL inside a port callback — the
moment at which a SIP worker once died with "'FramePort' object has no attribute
'events'".
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RACE = Path(__file__).resolve().parent / "pjsua_port_race.py"
ROUNDS = 40


def run_race(mode: str) -> tuple[int, dict | None, str]:
    """(exit status, the script's JSON report or None, its stderr)."""

    def no_core_dump() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    done = subprocess.run(
        [sys.executable, str(RACE), mode, str(ROUNDS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=no_core_dump,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, json.loads(lines[-1]) if lines else None, done.stderr


def test_calls_ended_as_the_worker_ends_them_never_fail_a_clock_callback():
    """Ports given back to the worker's pool at each call's end, and the pool closed at
    the end: every round carries frames both ways, no callback fails, the ports are
    reused (never more than the pool's limit), and pjsua shuts down cleanly."""
    status, report, stderr = run_race("pool")
    assert status == 0, stderr[-3000:]
    assert report is not None
    assert report["rounds"] == ROUNDS
    assert report["failures"] == 0, stderr[-3000:]
    assert report["frames_received"] > ROUNDS and report["frames_played"] > ROUNDS
    assert report["ports_made"] <= 4


def test_the_race_is_real_when_a_port_is_destroyed_under_the_clock():
    """The same rounds with each call's ports destroyed while the clock runs (what the
    worker did before): the clock thread runs a callback on a half-destroyed port and the
    process fails. This shows that the rounds above do meet the race."""
    status, report, stderr = run_race("destroy")
    failed_callbacks = report["failures"] if report is not None else 0
    assert status != 0 or failed_callbacks > 0, (status, report)
    if status == 0:
        assert "has no attribute" in stderr
