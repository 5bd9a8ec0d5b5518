"""`voicebot serve` as an operator starts it: one process, SIP + web app, stopped by SIGTERM.

The parts are tested in depth elsewhere (test_sip*, test_webrtc*, test_web*); this checks
the composition root: everything starts with the embedded defaults, says where it
listens, answers on both ports, keeps a published FAQ over a restart, and shuts down
cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from nodes import free_port, wait_in_log

pytest.importorskip("pjsua2")

START_TIMEOUT_S = 300  # first start renders the FAQ answers into the speech cache


class Service:
    """A `voicebot serve` subprocess and its log."""

    def __init__(self, tmp_path: Path, speech_cache: Path):
        self.log_path = tmp_path / f"serve-{uuid.uuid4().hex[:6]}.log"
        self.sip_port = free_port()
        self.web_port = free_port()
        env = dict(os.environ)
        env.update(
            VOICEBOT_DATA_DIR=str(tmp_path / "data"),
            VOICEBOT_TTS__ENGINE="pyttsx3",  # quick to render; Kokoro is tested elsewhere
            VOICEBOT_TTS__CACHE_DIR=str(speech_cache),
            VOICEBOT_WEB__INITIAL_ADMIN_PASSWORD="serve-test-password-1",
            VOICEBOT_SIP__PORT=str(self.sip_port),
            VOICEBOT_WEB__PORT=str(self.web_port),
        )
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "commands.cli", "serve", "--grace", "2"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT_S) -> re.Match:
        return wait_in_log(self.proc, self.text, pattern, timeout, "voicebot serve")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()


def sip_options(port: int) -> str:
    """Send a SIP OPTIONS over UDP and return the status line of the answer."""
    branch = "z9hG4bK" + uuid.uuid4().hex[:10]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
        msg = (
            f"OPTIONS sip:taxbot@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@127.0.0.1:{local}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:taxbot@127.0.0.1:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        s.settimeout(5)
        s.sendto(msg.encode(), ("127.0.0.1", port))
        data, _ = s.recvfrom(65535)
    return data.decode(errors="replace").split("\r\n", 1)[0]


@pytest.fixture(scope="module")
def speech_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-speech-cache")


def test_serve_starts_everything_answers_and_stops_on_sigterm(tmp_path, speech_cache):
    service = Service(tmp_path, speech_cache)
    try:
        web = service.wait_for(r"web app: (http://\S+?) ").group(1)
        service.wait_for(r"SIP endpoint listening on .*? as (sip:\S+)")
        service.wait_for(r"ready; press Ctrl\+C")
        assert web == f"http://127.0.0.1:{service.web_port}"

        health = httpx.get(f"{web}/healthz", timeout=10)
        assert health.status_code == 200, health.text
        ready = httpx.get(f"{web}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["reasons"] == [], ready.text

        assert sip_options(service.sip_port) == "SIP/2.0 200 OK"

        # The first admin can log in to the Japanese operator pages.
        with httpx.Client(base_url=web, timeout=10, follow_redirects=True) as client:
            page = client.get("/login")
            assert page.status_code == 200 and "ログイン" in page.text
    finally:
        code = service.stop()
    log = service.text()
    assert code == 0, log
    assert "shutting down" in log and "stopped;" in log
    assert "Traceback" not in log, log


def test_serve_speaks_the_last_published_faq_after_a_restart(tmp_path, speech_cache):
    """Operators published version 2 before this start: the bot loads it, not the shipped FAQ."""
    from dashboards.config import OperationsSettings
    from dashboards.db import Database
    from dashboards.faq_versions import FaqVersions

    data = tmp_path / "data"
    db = Database(OperationsSettings(data_dir=data).database_url())
    db.create_all()
    versions = FaqVersions(db, data_dir=data)
    versions.ensure_initial_version()
    entry = dict(versions.draft().get("cert.fee"))
    entry["answer"] = "証明書の手数料は、一通三百円です。窓口でお支払いください。"
    versions.save_entry(entry, "test", entry_id="cert.fee")
    versions.publish("test")
    db.dispose()

    service = Service(tmp_path, speech_cache)
    try:
        service.wait_for(r"ready; press Ctrl\+C")
        service.wait_for(r"FAQ reloaded: 44 entries", timeout=30)
    finally:
        assert service.stop() == 0
    # the bot was switched before it took calls
    log = service.text()
    assert log.index("FAQ reloaded") < log.index("ready; press Ctrl+C")
