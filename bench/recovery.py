"""Time to recover from the whole service being killed mid-call (SIGKILL), under a supervisor.

``voicebot serve`` runs under a small supervising loop that starts it again whenever it
exits, after ``--restart-s`` (what systemd's ``Restart=always`` + ``RestartSec=`` do; the
loop also offers a ``$NOTIFY_SOCKET`` like systemd's, so READY=1 is timed too). systemd
itself is not used: ``systemd-run`` needs systemd running as PID 1, which a container
usually lacks; the figures are those of the process start-up, the same under either.

Each round: a SIP caller (real RTP from Python) is answered, hears the greeting, asks a
question; once the bot's decision is recorded the service is SIGKILLed. Measured from the
kill: the supervisor seeing the exit and starting it again, ``/healthz`` answering 200,
SIP OPTIONS answered 200, READY=1, the next INVITE answered 200 and its greeting heard;
also when the cut caller's RTP stopped and whether a BYE reached it, and when the
restarted process logged each phase of its start.
The records are then checked: the cut call ``abandoned``, the next call recorded (and
``hung_up`` after its BYE). Everything runs in a temporary data and speech-cache
directory; the voice is pyttsx3 (rendering every fixed reply with Kokoro takes minutes;
``--tts kokoro`` uses Kokoro with the user's speech cache). Prints JSON.

    python bench/recovery.py                 # 3 rounds
    python bench/recovery.py --rounds 5 --restart-s 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sipp.rtp_peer import RtpPeer  # noqa: E402
from sipp.sip_client import SipClient  # noqa: E402
from sipp.sip_harness import clip, free_port  # noqa: E402
from sqlalchemy import select  # noqa: E402

from dashboards.call_records import Call, last_recorded_at  # noqa: E402
from dashboards.db import Database  # noqa: E402

QUESTION = "自動引き落としの申し込み方法を教えてください"
START_TIMEOUT_S = 600.0
RECOVERY_TIMEOUT_S = 300.0


def cpu_description() -> dict[str, Any]:
    """The CPU model, core count and whether AVX-512 / AMX are present (Linux /proc)."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "amx": any(f.startswith("amx") for f in flags),
    }


class NotifyListener(asyncio.DatagramProtocol):
    """The supervisor's side of ``$NOTIFY_SOCKET``: every message with its arrival time."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, str]] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = time.monotonic()
        for line in data.decode(errors="replace").splitlines():
            self.messages.append((now, line))

    def first(self, message: str, after: float) -> float | None:
        return next((t for t, m in self.messages if m == message and t >= after), None)


class Supervisor:
    """Restart=always: runs the command; whenever it exits, waits ``restart_s`` and starts
    it again, until ``stop``. Keeps each process's start and exit times."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path, restart_s: float):
        self.command = command
        self.env = env
        self.log_path = log_path
        self.restart_s = restart_s
        self.process: asyncio.subprocess.Process | None = None
        self.starts: list[float] = []
        self.exits: list[tuple[float, int]] = []
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with self.log_path.open("ab") as log:
            while not self._stopping:
                self.starts.append(time.monotonic())
                self.process = await asyncio.create_subprocess_exec(
                    *self.command, env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT
                )
                code = await self.process.wait()
                self.exits.append((time.monotonic(), code))
                if not self._stopping:
                    await asyncio.sleep(self.restart_s)

    async def stop(self) -> None:
        self._stopping = True
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await self.process.wait()
        if self._task is not None:
            await self._task


async def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1):
    """Poll ``check`` (sync or async) until it returns something true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(every)
    raise TimeoutError(f"not within {timeout} s: {what}")


def final(call_id: str, method: str = "INVITE") -> Callable[[Any], bool]:
    return lambda m: (
        not m.is_request and m.call_id == call_id and m.method == method and m.status >= 200
    )


async def options_ok(port: int) -> bool:
    """A SIP OPTIONS over UDP answered 200 within 0.5 s."""
    client = await SipClient.open()
    try:
        call_id = uuid.uuid4().hex
        sender = f"{client.host}:{client.port}"
        client.send(
            f"""OPTIONS sip:taxbot@127.0.0.1:{port} SIP/2.0
            Via: SIP/2.0/UDP {sender};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport
            Max-Forwards: 70
            From: <sip:probe@{sender}>;tag={uuid.uuid4().hex[:8]}
            To: <sip:taxbot@127.0.0.1:{port}>
            Call-ID: {call_id}
            CSeq: 1 OPTIONS
            """,
            port,
        )
        answer = await client.expect(final(call_id, "OPTIONS"), timeout=0.5)
        return answer.status == 200
    except TimeoutError:
        return False
    finally:
        client.close()


async def health_ok(http: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await http.get(url, timeout=1.0)).status_code == 200
    except httpx.HTTPError:
        return False


class Caller:
    """One SIP call with real RTP: INVITE/200/ACK, the greeting heard, BYE."""

    def __init__(self, port: int):
        self.port = port
        self.call_id = uuid.uuid4().hex
        self.client: SipClient | None = None
        self.rtp: RtpPeer | None = None
        self.ok: Any = None

    async def answered(self) -> None:
        self.client, self.rtp = await SipClient.open(), await RtpPeer.open()
        self.client.invite(self.port, self.call_id, rtp_port=self.rtp.port)
        self.ok = await self.client.expect(final(self.call_id), timeout=30)
        if self.ok.status != 200:
            raise RuntimeError(f"INVITE answered {self.ok.start_line}")
        self.client.in_dialog("ACK", self.port, self.ok, 1)

    async def greeted(self) -> None:
        await self.rtp.wait_for_bot_speech(timeout=60)

    async def hang_up(self) -> None:
        self.client.in_dialog("BYE", self.port, self.ok, 2)
        await self.client.expect(final(self.call_id, "BYE"), timeout=10)

    def close(self) -> None:
        for part in (self.rtp, self.client):
            if part is not None:
                part.close()


# Log lines of a start, in order: the phase each one ends (seconds after the kill).
PHASES = {
    "records_closed": "commands.service: records:",
    "whisper_loaded": "voicebot.asr.whisper: whisper model loaded",
    "web_listening": "commands.service: web app:",
    "sip_listening": "telephony.sip_endpoint: SIP endpoint listening",
    "ready": "commands.service: ready;",
}


def restart_phases(log_path: Path, offset: int, killed_wall: float) -> dict[str, float]:
    """When the restarted process logged each phase, in seconds after the kill (the log's
    timestamps are wall-clock, to the millisecond)."""
    import datetime as dt

    text = log_path.read_bytes()[offset:].decode(errors="replace")
    found = {}
    for name, marker in PHASES.items():
        match = re.search(
            r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*" + re.escape(marker), text, re.M
        )
        if match:
            stamp = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            found[name] = round(stamp.timestamp() - killed_wall, 3)
    return found


def sip_calls(db: Database) -> list[Call]:
    with db.session() as session:
        calls = list(session.scalars(select(Call).where(Call.transport == "sip")))
        for call in calls:
            last_recorded_at(call)  # loads turns while the session is open
        return calls


async def one_round(
    supervisor: Supervisor,
    notify: NotifyListener,
    db: Database,
    http: httpx.AsyncClient,
    health_url: str,
    sip_port: int,
) -> dict[str, Any]:
    known = {c.id for c in sip_calls(db)}
    caller = Caller(sip_port)
    try:
        await caller.answered()
        await caller.greeted()
        await caller.rtp.wait_for_bot_quiet(1.0, timeout=60)
        await caller.rtp.say(clip(QUESTION))

        def decided() -> list[Call]:
            return [
                c for c in sip_calls(db) if c.id not in known and any(t.decided_at for t in c.turns)
            ]

        [cut] = await wait_until(decided, 120, "the bot's decision recorded", every=0.2)
        victim = supervisor.process
        exits_before = len(supervisor.exits)
        log_offset = supervisor.log_path.stat().st_size
        killed, killed_wall = time.monotonic(), time.time()
        victim.send_signal(signal.SIGKILL)
    except BaseException:
        caller.close()
        raise

    figures: dict[str, float | None] = {}

    async def exited() -> None:
        await wait_until(lambda: len(supervisor.exits) > exits_before, 30, "exit", every=0.005)
        figures["exit_seen_s"] = supervisor.exits[exits_before][0] - killed
        await wait_until(lambda: supervisor.starts[-1] > killed, 30, "restart", every=0.005)
        figures["restarted_s"] = supervisor.starts[-1] - killed

    async def healthy() -> None:
        await wait_until(lambda: health_ok(http, health_url), RECOVERY_TIMEOUT_S, "health", 0.05)
        figures["health_200_s"] = time.monotonic() - killed

    async def sip_ok() -> None:
        await wait_until(lambda: options_ok(sip_port), RECOVERY_TIMEOUT_S, "OPTIONS", 0.05)
        figures["sip_options_200_s"] = time.monotonic() - killed

    await asyncio.gather(exited(), healthy(), sip_ok())
    # What the cut caller noticed: the bot's RTP stopping, and a BYE if one reached it.
    heard = [t for t in caller.rtp.received_at if t >= killed - 0.1]
    figures["cut_caller_rtp_stopped_s"] = max(0.0, max(heard) - killed) if heard else 0.0
    cut_got_bye = any(m.is_request and m.method == "BYE" for m in caller.client.received)
    caller.close()
    await wait_until(
        lambda: notify.first("READY=1", killed), 30, "READY=1 after the restart", every=0.05
    )
    figures["ready_notified_s"] = notify.first("READY=1", killed) - killed

    following = Caller(sip_port)
    try:
        await following.answered()
        figures["next_call_answered_s"] = time.monotonic() - killed
        await following.greeted()
        figures["next_call_greeted_s"] = time.monotonic() - killed
        await following.hang_up()
    finally:
        following.close()

    def next_recorded() -> list[Call]:
        return [c for c in sip_calls(db) if c.id not in known | {cut.id} and c.outcome]

    [new] = await wait_until(next_recorded, 30, "the next call recorded as ended")
    [closed] = [c for c in sip_calls(db) if c.id == cut.id]
    return {
        **{k: round(v, 3) for k, v in figures.items()},
        "restart_log_s": restart_phases(supervisor.log_path, log_offset, killed_wall),
        "cut_call": {
            "caller_got_bye": cut_got_bye,
            "outcome": closed.outcome,
            "node": closed.node,
            "ended_at_is_last_event": closed.ended_at == last_recorded_at(cut),
            "duration_recorded_s": round((closed.ended_at - closed.started_at).total_seconds(), 3)
            if closed.ended_at
            else None,
        },
        "next_call": {"outcome": new.outcome, "node": new.node},
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="voicebot-recovery-"))
    sip_port, web_port = free_port(), free_port(socket.SOCK_STREAM)
    node = f"bench-{uuid.uuid4().hex[:6]}"
    notify_path = work / "notify.sock"
    loop = asyncio.get_running_loop()
    transport, notify = await loop.create_datagram_endpoint(
        NotifyListener, local_addr=str(notify_path), family=socket.AF_UNIX
    )
    env = dict(os.environ)
    env.update(
        VOICEBOT_DATA_DIR=str(work / "data"),
        VOICEBOT_NODE=node,
        VOICEBOT_TTS__ENGINE=args.tts,
        VOICEBOT_SIP__PORT=str(sip_port),
        VOICEBOT_WEB__PORT=str(web_port),
        VOICEBOT_WEB__INITIAL_ADMIN_PASSWORD="recovery-bench-password-1",
        NOTIFY_SOCKET=str(notify_path),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    if args.tts == "pyttsx3":
        env["VOICEBOT_TTS__CACHE_DIR"] = str(work / "speech-cache")
    log_path = work / "serve.log"
    command = [sys.executable, "-m", "commands.cli", "serve", "--grace", "2"]
    supervisor = Supervisor(command, env, log_path, args.restart_s)
    db = Database(f"sqlite:///{work / 'data' / 'voicebot.db'}")
    health_url = f"http://127.0.0.1:{web_port}/healthz"
    rounds = []
    load_before = round(os.getloadavg()[0], 2)
    try:
        began = time.monotonic()
        supervisor.start()
        await wait_until(
            lambda: notify.first("READY=1", began), START_TIMEOUT_S, "the first start", 0.1
        )
        cold_ready_s = notify.first("READY=1", began) - began
        await wait_until(
            lambda: re.search("all FAQ answers are rendered", log_path.read_text(errors="replace")),
            START_TIMEOUT_S,
            "the FAQ answers rendered",
        )
        async with httpx.AsyncClient() as http:
            for _ in range(args.rounds):
                rounds.append(await one_round(supervisor, notify, db, http, health_url, sip_port))
                await asyncio.sleep(1.0)
    finally:
        await supervisor.stop()
        transport.close()
        db.dispose()
    keys = [k for k, v in rounds[0].items() if isinstance(v, float)] if rounds else []
    return {
        "bench": "recovery",
        "cpu": cpu_description(),
        "note": "shared 2-core machine: timings are noisy",
        "supervisor": (
            f"Python loop restarting `voicebot serve` on exit after {args.restart_s} s "
            "(Restart=always, RestartSec); systemd is not PID 1 here, so no systemd-run"
        ),
        "tts": args.tts,
        "load_average_1m": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
        "node": node,
        "cold_start_ready_s": round(cold_ready_s, 3),
        "rounds": rounds,
        "median_s": {k: round(statistics.median(r[k] for r in rounds), 3) for k in keys},
        "all_cut_calls_abandoned": all(r["cut_call"]["outcome"] == "abandoned" for r in rounds),
        "all_next_calls_recorded": all(r["next_call"]["outcome"] == "hung_up" for r in rounds),
        "work_dir": str(work),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="kills, each mid-call")
    parser.add_argument(
        "--restart-s", type=float, default=1.0, help="delay before a restart (RestartSec)"
    )
    parser.add_argument("--tts", choices=["pyttsx3", "kokoro"], default="pyttsx3")
    print(json.dumps(asyncio.run(main(parser.parse_args())), ensure_ascii=False, indent=1))
