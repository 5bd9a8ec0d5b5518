"""Nodes of a scaled-out service for tests: real `voicebot serve --role ...` subprocesses.

Each node gets its own name, data directory, ports and RTP range, and all of them share
one database (a fresh PostgreSQL database from ``dbfixtures.postgres_url``), as separate
machines would. The voice is pyttsx3 (espeak-ng), quick to render; each node keeps its
own speech cache so two nodes never render into one folder at once.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

START_TIMEOUT_S = 600.0  # the first start renders every prompt with espeak-ng
ROOT = Path(__file__).resolve().parents[1]


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
    """One `voicebot serve` node and its log."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        role: str,
        database_url: str,
        *,
        rtp_base: int = 30000,
        env: dict[str, str] | None = None,
    ):
        self.name = name
        self.role = role
        self.log_path = workdir / f"{name}.log"
        self.sip_port = free_port()
        self.web_port = free_port(socket.SOCK_STREAM)
        environ = dict(os.environ)
        environ.update(
            VOICEBOT_NODE=name,
            VOICEBOT_DATABASE__URL=database_url,
            VOICEBOT_DATA_DIR=str(workdir / name / "data"),
            VOICEBOT_TTS__ENGINE="pyttsx3",  # quick to render; Kokoro is tested elsewhere
            VOICEBOT_TTS__CACHE_DIR=str(workdir / name / "speech-cache"),
            VOICEBOT_WEB__INITIAL_ADMIN_PASSWORD="node-test-password-1",
            VOICEBOT_SIP__PORT=str(self.sip_port),
            VOICEBOT_SIP__MAX_CALLS="4",
            VOICEBOT_SIP__WORKERS="1",
            VOICEBOT_SIP__RTP_PORT_MIN=str(rtp_base),
            VOICEBOT_SIP__RTP_PORT_MAX=str(rtp_base + 199),
            VOICEBOT_WEB__PORT=str(self.web_port),
        )
        environ.update(env or {})
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "commands.cli", "serve", "--role", role, "--grace", "2"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=environ,
            cwd=ROOT,
        )

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT_S) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text())
            if match:
                return match
            if self.proc.poll() is not None:
                pytest.fail(f"node {self.name} exited ({self.proc.returncode}):\n{self.text()}")
            time.sleep(0.2)
        pytest.fail(f"node {self.name}: no {pattern!r} in the log within {timeout} s")

    def ready(self) -> None:
        """Until the node says it is ready (and, with a bot, all answers are rendered)."""
        self.wait_for(r"ready; press Ctrl\+C")
        if self.role != "web":
            self.wait_for(r"all FAQ answers are rendered")  # no rendering during calls

    def stop(self) -> int:
        """SIGTERM and wait (the node drains for its 2 s grace); its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
