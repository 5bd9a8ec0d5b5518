"""Nodes of a scaled-out service for tests: real `voicebot serve --role ...` subprocesses.

Each node gets its own name, data directory, ports and RTP range, and all of them share
one database (a fresh PostgreSQL database from ``dbfixtures.postgres_url``), as separate
machines would. The voice is pyttsx3 (espeak-ng), quick to render; each node keeps its
own speech cache so two nodes never render into one folder at once.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

START_TIMEOUT_S = 600.0  # the first start renders every prompt with espeak-ng
ROOT = Path(__file__).resolve().parents[1]


def wait_until(check: Callable[[], object], timeout: float, what: str) -> object:
    """``check()``'s first true value within ``timeout`` seconds; else the test fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"not within {timeout} s: {what}")


def wait_in_log(
    proc: subprocess.Popen, text: Callable[[], str], pattern: str, timeout: float, who: str
) -> re.Match:
    """Until ``pattern`` appears in a service's log (``text()``); the test fails if the
    process exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, text())
        if match:
            return match
        if proc.poll() is not None:
            pytest.fail(f"{who} exited ({proc.returncode}):\n{text()}")
        time.sleep(0.2)
    pytest.fail(f"{who}: no {pattern!r} in the log within {timeout} s:\n{text()}")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for UDP and TCP on 127.0.0.1 (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, other) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


class Node:
    """One `voicebot serve` node and its log; it can be killed and started again on the
    same name, ports and data (as a supervisor restarts a service)."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        role: str,
        database_url: str,
        *,
        rtp_base: int = 30000,
        env: dict[str, str] | None = None,
        grace_s: float = 2.0,
    ):
        self.name = name
        self.role = role
        self.log_path = workdir / f"{name}.log"
        self.speech_cache = workdir / name / "speech-cache"
        self.sip_port = free_port()
        self.web_port = free_port(socket.SOCK_STREAM)
        environ = dict(os.environ)
        environ.update(
            PYTHONFAULTHANDLER="1",  # a crash leaves every thread's stack in the log
            VOICEBOT_NODE=name,
            VOICEBOT_DATABASE__URL=database_url,
            VOICEBOT_DATA_DIR=str(workdir / name / "data"),
            VOICEBOT_TTS__ENGINE="pyttsx3",  # quick to render; Kokoro is tested elsewhere
            VOICEBOT_TTS__CACHE_DIR=str(self.speech_cache),
            VOICEBOT_WEB__INITIAL_ADMIN_PASSWORD="node-test-password-1",
            VOICEBOT_SIP__PORT=str(self.sip_port),
            VOICEBOT_SIP__MAX_CALLS="4",
            VOICEBOT_SIP__WORKERS="1",
            VOICEBOT_SIP__RTP_PORT_MIN=str(rtp_base),
            VOICEBOT_SIP__RTP_PORT_MAX=str(rtp_base + 199),
            VOICEBOT_WEB__PORT=str(self.web_port),
        )
        environ.update(env or {})
        self._environ = environ
        self._command = [
            *(sys.executable, "-m", "commands.cli", "serve"),
            *("--role", role, "--grace", f"{grace_s:g}"),
        ]
        self.grace_s = grace_s
        self._log_start = 0
        self.log = self.log_path.open("w")
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            self._command, stdout=self.log, stderr=subprocess.STDOUT, env=self._environ, cwd=ROOT
        )

    def kill(self) -> int:
        """SIGKILL (no shutdown code runs, as in a crash); the exit status."""
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def restart(self) -> None:
        """Start the node again after it exited; ``text`` then reads the new run's log."""
        assert self.proc.poll() is not None, f"node {self.name} is still running"
        if self.log.closed:
            self.log = self.log_path.open("a")
        self.log.flush()
        self._log_start = self.log_path.stat().st_size
        self.proc = self._spawn()

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def text(self) -> str:
        """The log of the node's current run."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def full_text(self) -> str:
        """The log of every run of the node."""
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT_S) -> re.Match:
        return wait_in_log(self.proc, self.text, pattern, timeout, f"node {self.name}")

    def ready(self) -> None:
        """Until the node says it is ready (and, with a bot, all answers are rendered)."""
        self.wait_for(r"ready; press Ctrl\+C")
        if self.role != "web":
            self.wait_for(r"all FAQ answers are rendered")  # no rendering during calls

    def terminate(self) -> None:
        """SIGTERM, without waiting: the node drains (its calls finish within its grace)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """SIGTERM and wait (the node drains for its grace, 2 s by default); its exit code."""
        self.terminate()
        try:
            return self.proc.wait(timeout=self.grace_s + 60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


def start_call_nodes(
    workdir: Path,
    names: list[str],
    database_url: str,
    *,
    rtp_base: int = 32000,
    env: dict[str, str] | None = None,
    grace_s: float = 2.0,
) -> list[Node]:
    """Call nodes, ready: the first renders the speech cache, the others start with a copy.

    Rendering every prompt and answer is the slow part of a node's first start; each node
    still has a cache folder of its own (never two renderers in one folder), but only the
    first pays for it, and the others start at once and in parallel.
    """
    nodes: list[Node] = []
    try:
        for index, name in enumerate(names):
            if index == 1:
                nodes[0].ready()
            if index >= 1:
                shutil.copytree(nodes[0].speech_cache, workdir / name / "speech-cache")
            nodes.append(
                Node(
                    workdir,
                    name,
                    "call",
                    database_url,
                    rtp_base=rtp_base + 1000 * index,
                    env=env,
                    grace_s=grace_s,
                )
            )
        for node in nodes:
            node.ready()
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes
