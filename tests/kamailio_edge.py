"""The SIP edge for tests and benches: Kamailio from the shipped configuration, in front
of call nodes (tests/nodes.py), and what a test reads back (OPTIONS answers, call records).

Only the configuration's site settings (the address, the port and the node list) are
replaced; everything else is deploy/kamailio/kamailio.cfg as shipped.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from nodes import Node, free_port
from sipp.sip_harness import run_sipp
from sqlalchemy import select

from dashboards.call_records import Call
from dashboards.db import Database

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
SHIPPED = Path(__file__).resolve().parents[1] / "deploy" / "kamailio" / "kamailio.cfg"

# Each test module using the edge sets ``pytestmark = needs_edge``.
needs_edge = pytest.mark.skipif(
    not Path(KAMAILIO).exists() or shutil.which("sipp") is None,
    reason="kamailio and sipp are needed (apt-get install kamailio sip-tester)",
)


def render_config(workdir: Path, port: int, nodes: list[Node]) -> Path:
    """The shipped configuration with this test's address, port and node list."""
    node_list = workdir / "voicebot-nodes.list"
    node_list.write_text(
        "".join(f"1 sip:127.0.0.1:{n.sip_port} 0 0 duid={n.name}\n" for n in nodes)
    )
    settings = {
        "EDGE_IP": "127.0.0.1",
        "EDGE_PORT": str(port),
        "NODE_LIST": str(node_list),
        "PBX_IP": "127.0.0.1",  # the test callers (sipp) send from here
    }
    text = SHIPPED.read_text()
    for name, value in settings.items():
        text, count = re.subn(
            rf'^#!substdef "!{name}![^!]*!g"$', f'#!substdef "!{name}!{value}!g"', text, flags=re.M
        )
        assert count == 1, f"{name} is no longer a site setting of {SHIPPED}"
    config = workdir / "kamailio.cfg"
    config.write_text(text)
    return config


class Kamailio:
    """Kamailio in the foreground (its log on stderr, into a file), on a loopback port."""

    def __init__(self, workdir: Path, nodes: list[Node]):
        self.port = free_port()
        self.config = render_config(workdir, self.port, nodes)
        check = subprocess.run(
            [KAMAILIO, "-c", "-f", str(self.config)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        rundir = workdir / "kamailio-run"
        rundir.mkdir()
        self.log_path = workdir / "kamailio.log"
        self.log = self.log_path.open("w")
        pidfile = rundir / "kamailio.pid"
        self.proc = subprocess.Popen(
            # -DD: in the foreground; -E: log to stderr; -m/-M: small shared/private memory
            [
                KAMAILIO,
                "-DD",
                "-E",
                "-f",
                str(self.config),
                "-m",
                "32",
                "-M",
                "4",
                "-Y",
                str(rundir),
                "-P",
                str(pidfile),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = 30) -> None:
        """Until the edge answers an OPTIONS of its own (it is up and routing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.text()
            if options_answer(self.port) == "SIP/2.0 200 OK":
                return
            time.sleep(0.3)
        pytest.fail(f"Kamailio did not answer on {self.port}:\n{self.text()}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


def options_answer(port: int, source: str = "127.0.0.1") -> str | None:
    """The status line of the answer to an OPTIONS sent to ``port`` from ``source``
    (None: no answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        local = s.getsockname()[1]
        s.sendto(
            (
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {source}:{local};branch=z9hG4bK{time.monotonic_ns()}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@{source}:{local}>;tag=probe\r\n"
                f"To: <sip:127.0.0.1:{port}>\r\n"
                f"Call-ID: probe-{time.monotonic_ns()}@127.0.0.1\r\n"
                "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            ("127.0.0.1", port),
        )
        s.settimeout(1)
        try:
            data, _ = s.recvfrom(65535)
        except TimeoutError:
            return None
    return data.decode(errors="replace").split("\r\n", 1)[0]


def sip_calls(db: Database) -> list[Call]:
    with db.session() as session:
        return list(session.scalars(select(Call).where(Call.transport == "sip")).all())


def wait_for_records(db: Database, count: int, timeout: float = 60) -> list[Call]:
    """The SIP calls once ``count`` of them are recorded as ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = sip_calls(db)
        if len(calls) >= count and all(c.outcome for c in calls):
            return calls
        time.sleep(0.5)
    pytest.fail(f"{count} ended SIP calls not recorded: {[(c.node, c.outcome) for c in calls]}")


def place_calls(edge: Kamailio, workdir: Path, calls: int, hold_ms: int = 1500) -> None:
    """``calls`` callers one after another through the edge, each hanging up after
    ``hold_ms``; all must be answered."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media:  # the bots' RTP lands here
        media.bind(("127.0.0.1", 0))
        run = asyncio.run(
            run_sipp(
                "uac_via_edge.xml",
                edge.port,
                workdir,
                keys={"rtp_port": str(media.getsockname()[1])},
                calls=calls,
                limit=1,
                extra=["-d", str(hold_ms)],
                timeout_s=120 + hold_ms / 1000,
            )
        )
    assert run.returncode == 0, (run.stdout, run.errors, edge.text())
