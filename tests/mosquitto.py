"""A real Mosquitto broker for tests, on a free local port, that can be stopped and
restarted on the same port (to test broker outages).

    with Mosquitto(tmp_path) as broker:
        ... broker.port ...
        broker.stop(); ...; broker.start()
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One mosquitto process (``-c`` a minimal config: local listener, anonymous, no
    persistence).

    ``persistent=True`` keeps sessions and queued QoS 1 messages across a restart (in
    ``workdir``), so that a test subscriber with a persistent session misses nothing
    while the broker is down and comes back.
    """

    def __init__(self, workdir: Path, port: int | None = None, *, persistent: bool = False):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "max_queued_messages 100000",
            "log_dest stderr",
        ]
        if persistent:
            lines += ["persistence true", f"persistence_location {self.workdir}/"]
            if os.geteuid() == 0:  # stay root: its own user may not enter the test's tmp dir
                lines.append("user root")
        else:
            lines.append("persistence false")
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start and wait until the port accepts connections."""
        if self.proc is not None:
            raise RuntimeError("mosquitto is already running")
        # Logs go to stderr, into a file of ours: as root, mosquitto switches to its own
        # user, which may not write into the test's private temporary directory.
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=log
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"mosquitto exited at start: {self._log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port}: {self._log_tail()}")

    def stop(self) -> None:
        """Stop (SIGTERM, then SIGKILL) and wait until the port is closed."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def env(self) -> dict[str, str]:
        """Environment variables that point ``voicebot`` at this broker."""
        return {"VOICEBOT_MQTT__HOST": self.host, "VOICEBOT_MQTT__PORT": str(self.port)}

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
