"""The whole service killed mid-call (SIGKILL: no shutdown code runs) and started again.

What a supervisor (systemd ``Restart=always``, Kubernetes ``restartPolicy: Always``) relies
on: the restarted process closes the calls its predecessor was taking as ``abandoned``,
ending each at the last thing recorded of it, touches no call another node sharing the
database is taking, and answers the next call. The end-to-end test runs the real
``voicebot serve`` twice on one SQLite file and places real SIP calls with RTP; the
record tests run on SQLite and PostgreSQL through the real recorder.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dbfixtures
import pytest
from dbfixtures import ScriptedTurn, record, scripted_call
from nodes import wait_until
from sqlalchemy import select, text

from dashboards.call_records import (
    Call,
    close_calls_of_silent_nodes,
    close_cut_calls,
    last_recorded_at,
    mark_abandoned,
    set_this_node,
    this_node,
)
from dashboards.db import Database

sys.path.insert(0, str(Path(__file__).parent))

# The record tests run on SQLite and PostgreSQL (fixtures from dbfixtures).
postgres_url = dbfixtures.postgres_url
database_url = dbfixtures.database_url
db = dbfixtures.db

QUESTION = "自動引き落としの申し込み方法を教えてください"


@pytest.fixture
def node_name() -> Iterator[Callable[[str], None]]:
    """Lets a test write rows as several nodes; the process's own name is restored after."""
    before = this_node()
    yield set_this_node
    set_this_node(before)


def the_call(database: Database, call_id: str) -> Call:
    with database.session() as session:
        call = session.get(Call, call_id)
        assert call is not None, call_id
        last_recorded_at(call)  # loads turns, transfers and errors while the session is open
        return call


# -- records -------------------------------------------------------------------------------
def test_restart_closes_only_this_nodes_open_calls_as_abandoned(db, node_name):
    """Node a restarts: its open call is closed as abandoned at its last recorded moment
    (a failed transfer 59.995 s in); node b's open call, which b may still be taking, and
    a's finished call are untouched; closing again finds nothing."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    turns = [ScriptedTurn("口座振替の申し込み", faq_id="payment.account-transfer")]
    node_name("node-b")
    record(db, scripted_call("b-open", start, turns, outcome=None))
    node_name("node-a")
    record(
        db,
        scripted_call("a-cut", start, turns, outcome=None, transfer=("caller_request", False)),
        scripted_call("a-done", start, turns, outcome="completed"),
    )

    assert close_cut_calls(db, "node-a") == 1

    cut = the_call(db, "a-cut")
    assert (cut.node, cut.outcome) == ("node-a", "abandoned")
    last = start + dt.timedelta(milliseconds=59_995)  # TransferFailed, the last event
    assert abs(cut.ended_at - last) < dt.timedelta(milliseconds=1)
    assert cut.duration_ms == pytest.approx(59_995, abs=1)
    other = the_call(db, "b-open")
    assert (other.node, other.outcome, other.ended_at) == ("node-b", None, None)
    done = the_call(db, "a-done")
    assert done.outcome == "completed"
    assert close_cut_calls(db, "node-a") == 0


def test_the_open_calls_of_a_node_that_stopped_checking_in_are_closed_by_the_others(db, node_name):
    """Node a died for good (its last check-in 5 minutes ago); node b checks in. The nodes
    still running close a's open call as abandoned without waiting for a to come back;
    b's open call and a's finished one are untouched."""
    from dashboards.faq_versions import record_node_version

    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=6)
    turns = [ScriptedTurn("口座振替の申し込み", faq_id="payment.account-transfer")]
    node_name("node-a")
    record(
        db,
        scripted_call("a-cut", start, turns, outcome=None),
        scripted_call("a-done", start, turns, outcome="completed"),
    )
    node_name("node-b")
    record(db, scripted_call("b-open", start, turns, outcome=None))
    record_node_version(db, "node-a", "call", 1)
    record_node_version(db, "node-b", "call", 1)
    silent_for = dt.timedelta(seconds=120)
    assert close_calls_of_silent_nodes(db, silent_for) == 0  # both checked in just now

    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)  # a never checks in again
    with db.session() as session:
        session.execute(
            text("UPDATE node_faq_versions SET seen_at = :t WHERE node = 'node-b'"),
            {"t": later.replace(tzinfo=None)},
        )
    assert close_calls_of_silent_nodes(db, silent_for, now=later) == 1
    assert the_call(db, "a-cut").outcome == "abandoned"
    assert the_call(db, "a-done").outcome == "completed"
    assert the_call(db, "b-open").outcome is None
    assert close_calls_of_silent_nodes(db, silent_for, now=later) == 0


def test_calls_recorded_before_nodes_were_are_left_to_the_age_backstop(database_url):
    """A database from a release without ``calls.node``: the column is added at start
    (NULL on old rows). An old open call belongs to no known node, so no restart closes it
    as abandoned; the backstop closes it as an error once it is over an hour old."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    old = Database(database_url)
    record(old, scripted_call("before-nodes", start, outcome=None))
    with old.engine.begin() as conn:
        conn.execute(text('ALTER TABLE calls DROP COLUMN "node"'))
    old.dispose()

    upgraded = Database(database_url)
    try:
        upgraded.create_all()
        call = the_call(upgraded, "before-nodes")
        assert (call.node, call.outcome) == (None, None)
        assert close_cut_calls(upgraded, this_node()) == 0
        assert mark_abandoned(upgraded, dt.timedelta(hours=1)) == 0  # five minutes old
        later = start + dt.timedelta(hours=2)
        assert mark_abandoned(upgraded, dt.timedelta(hours=1), now=later) == 1
        assert the_call(upgraded, "before-nodes").outcome == "error"
    finally:
        upgraded.dispose()


# -- the real service ------------------------------------------------------------------------
class NotifySocket:
    """A stand-in for systemd's notification socket: a thread collects what arrives (the
    kernel queues only a few datagrams; systemd, like this, reads them as they come)."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.received: list[str] = []
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def messages(self) -> list[str]:
        return list(self.received)

    def close(self) -> None:
        self._closed.set()
        self._reader.join()
        self.sock.close()


def sip_calls(database: Database) -> list[Call]:
    with database.session() as session:
        calls = session.scalars(select(Call).where(Call.transport == "sip")).all()
        for call in calls:
            last_recorded_at(call)
        return list(calls)


def sip_workers(pid: int) -> list[int]:
    """Pids of the SIP worker processes ``pid`` started."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"telephony.sip_worker" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def running(pid: int) -> bool:
    """True while ``pid`` runs (an exited child nobody reaped yet is a zombie: not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def final(call_id: str, method: str = "INVITE") -> Callable[[object], bool]:
    """Matches the final response to the caller's ``method`` in call ``call_id``."""
    return lambda m: (
        not m.is_request and m.call_id == call_id and m.method == method and m.status >= 200
    )


def decided(call: Call) -> bool:
    return any(turn.decided_at is not None for turn in call.turns)


def test_killed_service_restarts_closes_the_cut_call_and_answers_the_next(tmp_path, monkeypatch):
    """``voicebot serve`` takes a SIP call; the caller asks a question and the bot decides
    on it; the process is SIGKILLed; its SIP workers, left without it, exit. Started again
    on the same database, it tells systemd READY=1 (and pings the watchdog), the cut call
    is ``abandoned``, ended at its last recorded moment, and the next caller is answered
    and recorded by the same node, ``hung_up`` after its BYE."""
    pytest.importorskip("pjsua2")
    from sipp.rtp_peer import RtpPeer
    from sipp.sip_client import SipClient
    from sipp.sip_harness import clip
    from test_serve import Service

    node = f"test-node-{uuid.uuid4().hex[:6]}"
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("VOICEBOT_NODE", node)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # a ping every 0.5 s
    speech_cache = tmp_path / "speech-cache"
    records = Database(f"sqlite:///{tmp_path / 'data' / 'voicebot.db'}")

    async def cut_call(port: int) -> list[int]:
        """Call, ask, and wait until the bot decided; SIGKILL; the killed SIP workers' pids."""
        client, rtp = await SipClient.open(), await RtpPeer.open()
        try:
            call_id = uuid.uuid4().hex
            client.invite(port, call_id, rtp_port=rtp.port)
            ok = await client.expect(final(call_id), timeout=30)
            assert ok.status == 200, ok.start_line
            client.in_dialog("ACK", port, ok, 1)
            await rtp.wait_for_bot_speech(timeout=60)  # the greeting
            await rtp.wait_for_bot_quiet(1.0, timeout=60)
            await rtp.say(clip(QUESTION))
            await asyncio.to_thread(
                wait_until,
                lambda: any(decided(c) for c in sip_calls(records)),
                120,
                "the bot's decision on the question recorded",
            )
            workers = sip_workers(first.proc.pid)
            first.proc.send_signal(signal.SIGKILL)
            return workers
        finally:
            rtp.close()
            client.close()

    async def next_call(port: int) -> int:
        client, rtp = await SipClient.open(), await RtpPeer.open()
        try:
            call_id = uuid.uuid4().hex
            client.invite(port, call_id, rtp_port=rtp.port)
            ok = await client.expect(final(call_id), timeout=30)
            client.in_dialog("ACK", port, ok, 1)
            await rtp.wait_for_bot_speech(timeout=60)
            client.in_dialog("BYE", port, ok, 2)
            bye_ok = await client.expect(final(call_id, "BYE"), timeout=10)
            return bye_ok.status
        finally:
            rtp.close()
            client.close()

    first = Service(tmp_path, speech_cache)
    try:
        first.wait_for(r"ready; press Ctrl\+C")
        first.wait_for(r"all FAQ answers are rendered")  # no rendering while the caller speaks
        wait_until(lambda: "READY=1" in notify.messages(), 10, "READY=1 from the first start")
        workers = asyncio.run(cut_call(first.sip_port))
        assert first.proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
        first.log.close()
    # Left without the bot, its SIP workers exit: no orphan keeps the RTP ports.
    assert workers
    wait_until(lambda: not any(running(pid) for pid in workers), 30, "the SIP workers exit")
    [cut] = sip_calls(records)
    assert (cut.node, cut.outcome, cut.ended_at) == (node, None, None)
    last = last_recorded_at(cut)
    assert last > cut.started_at

    notify.received.clear()  # the first process's messages
    second = Service(tmp_path, speech_cache)
    try:
        second.wait_for(r"ready; press Ctrl\+C")
        received = wait_until(
            lambda: {"READY=1", "WATCHDOG=1"} <= set(notify.messages()),
            10,
            "READY=1 and watchdog pings from the restarted service",
        )
        assert received
        assert f"node {node}: 1 abandoned call(s) closed" in second.text()

        [closed] = sip_calls(records)
        assert (closed.id, closed.outcome, closed.ended_at) == (cut.id, "abandoned", last)
        assert closed.duration_ms == pytest.approx((last - cut.started_at).total_seconds() * 1e3)

        assert asyncio.run(next_call(second.sip_port)) == 200
        new = wait_until(
            lambda: [c for c in sip_calls(records) if c.id != cut.id and c.outcome],
            30,
            "the next call recorded as ended",
        )
        assert [(c.node, c.outcome) for c in new] == [(node, "hung_up")]
    finally:
        code = second.stop()
        stopping = "STOPPING=1" in notify.messages()
        notify.close()
        records.dispose()
    assert code == 0, second.text()
    assert stopping  # told systemd it drains on SIGTERM
    assert "Traceback" not in second.text(), second.text()
