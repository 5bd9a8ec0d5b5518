"""Soak test with faults: the whole service under continuous SIP calls for a while.

Starts its own Mosquitto (persistent, on a free port) and its own database (a SQLite file;
with ``--postgres`` a fresh database on the local PostgreSQL server, 127.0.0.1:5432 trust
auth, created here and dropped at the end), then the service in a separate process
(bench/soak_service.py: ``voicebot serve`` composed in-process, with a recogniser and a
synthesiser that fail on demand and a dialogue clock inside office hours). Callers
(bench/soak_callers.py: sipp for SIP, a Python RTP peer for media) keep ``--calls`` calls
up at once for ``--minutes``, asking real recorded questions from tests/data and sometimes
pressing keys; an MQTT subscriber of ours receives every call event.

Faults, each once, spread over the run (``--faults`` picks some):

* ``recognizer``: recognitions raise until a call has met the failure;
* ``synthesizer``: the next synthesis raises (the FAQ answers are forgotten first, so
  that the next answer asked for is synthesised on the call path);
* ``database``: SQLite locked by another connection holding an exclusive lock for
  ``--db-outage`` s; with ``--postgres`` the service's connections terminated
  (pg_terminate_backend) again and again for as long;
* ``broker``: Mosquitto stopped for ``--broker-outage`` s, then started again;
* ``worker``: a pjsua worker process (the one with most calls) killed with SIGKILL;
* ``web``: the web app flooded by many concurrent clients (bench/web_flood.py).

Prints JSON: the CPU, calls started/completed/transferred/failed, callers who heard a
silent gap over 1 s while waiting for the bot (after their utterance ended, until the
bot's audio energy rose, or until the call ended if it never did; callers of the killed
worker also counted apart) or inside the bot's speech, with each such gap's time, fault
and what the bot played first; records lost (answered calls without a complete call row),
events lost (events handed to the MQTT publisher that our subscriber never received),
waits and the bot's reported latency p50/p95 per minute, the service's RSS (the process
and its pjsua workers) and the fault timeline. Timings depend on the machine and on
whatever else runs on it.

Memory: ``rss_mib.start`` is taken once the first ``--calls`` calls have ended (every
line has carried a whole call: models loaded, caches and allocator arenas in use), not at
ready, where none of that had happened yet; ``at_ready`` is given too. The main process
is probed every 10 s (memory.jsonl in the work directory): RSS, malloc's bytes in use and
free-but-kept (fragmentation), and at the end its RSS after ``malloc_trim``. With
``--tracemalloc N`` the report names the Python allocation sites that grew after warm-up.

    python bench/soak.py                       # 10 minutes, 8 calls at once, every fault
    python bench/soak.py --minutes 1 --calls 4 --faults recognizer,broker,worker
    python bench/soak.py --postgres
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import random
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for _path in (ROOT, ROOT / "tests", BENCH):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import aiomqtt  # noqa: E402
import numpy as np  # noqa: E402
from mosquitto import Mosquitto  # noqa: E402
from soak_callers import GAP_S, Caller, CallerResult, QuestionBank, scenario_file  # noqa: E402

log = logging.getLogger("soak")

FAULTS = ("recognizer", "database", "broker", "synthesizer", "worker", "web")
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SPEECH_CACHE = Path(tempfile.gettempdir()) / "voicebot-soak-speech-cache"
TOPIC = "voicebot/soak/calls/#"


@dataclass
class SoakOptions:
    """What one soak run does; the defaults are the 10-minute bench."""

    minutes: float = 10.0
    calls: int = 8
    faults: tuple[str, ...] = FAULTS
    postgres: bool = False
    tts: str = "pyttsx3"
    max_call_s: float = 150.0
    broker_outage_s: float = 15.0
    db_outage_s: float = 10.0
    flood_s: float = 15.0
    flood_threads: int = 48
    seed: int = 1
    work: Path | None = None
    keep: bool = False
    tracemalloc: int = 0  # frames: the service traces Python allocations (slow; diagnosis)


def cpu_model() -> str:
    """The CPU's model name and whether it has AVX-512 / AMX (Linux /proc)."""
    model, flags = "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    extras = [name for name, on in (("AVX-512", "avx512f" in flags),
              ("AMX", any(f.startswith("amx") for f in flags))) if on]  # fmt: skip
    return f"{model} ({', '.join(extras) or 'no AVX-512'})"


def mib(sizes: dict[str, int]) -> dict[str, float]:
    return {name: round(size / 2**20, 1) for name, size in sizes.items()}


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


# -- the service process ----------------------------------------------------------------
class ServiceProcess:
    """bench/soak_service.py in a child process, driven over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.calls: dict[str, dict[str, Any]] = {}  # SIP Call-ID -> bot call id, worker
        self.failures: list[dict[str, Any]] = []
        self._replies: dict[str, asyncio.Queue[dict[str, Any]]] = collections.defaultdict(
            asyncio.Queue
        )
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, args: list[str], log_path: Path, cwd: Path) -> ServiceProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")}
        with log_path.open("ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(BENCH / "soak_service.py"),
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                cwd=cwd,
                env=env,
                limit=16 * 1024 * 1024,
            )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = message.pop("type")
            if kind == "call":
                self.calls[message["sip_call_id"]] = message
            elif kind == "component_failed":
                message["at"] = time.monotonic()
                self.failures.append(message)
            else:
                self._replies[kind].put_nowait(message)

    async def expect(self, kind: str, timeout: float) -> dict[str, Any]:
        waiter = asyncio.ensure_future(self._replies[kind].get())
        exited = asyncio.ensure_future(self.proc.wait())
        done, _ = await asyncio.wait(
            {waiter, exited}, timeout=timeout, return_when="FIRST_COMPLETED"
        )
        exited.cancel()
        if waiter in done:
            return waiter.result()
        waiter.cancel()
        raise RuntimeError(f"the service sent no {kind!r} (exit status {self.proc.returncode})")

    async def command(self, cmd: str, reply: str | None = None, **data: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **data}) + "\n").encode())
        await self.proc.stdin.drain()
        return await self.expect(reply, 60.0) if reply else {}

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


# -- the MQTT subscriber --------------------------------------------------------------------
class EventListener:
    """A persistent-session MQTT subscriber: QoS 1 messages queued for it while the
    broker is down (it persists them) or while it reconnects are still delivered."""

    def __init__(self, port: int):
        self.port = port
        self.identifier = f"soak-listener-{uuid.uuid4().hex[:8]}"
        self.seqs: dict[str, set[int]] = collections.defaultdict(set)
        self.events: list[dict[str, Any]] = []
        self.every_event: list[dict[str, Any]] = []  # for callers.json (--work, --keep)
        self.messages = 0
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 20)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.identifier, clean_session=False
                ) as client:
                    await client.subscribe(TOPIC, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        self._on(json.loads(message.payload))
            except aiomqtt.MqttError:
                self.subscribed.clear()
                await asyncio.sleep(0.2)

    async def settle(self, published: dict[str, int], timeout: float) -> None:
        """Until every published event has arrived, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.received(c) >= n for c, n in published.items()):
                return
            await asyncio.sleep(0.2)

    def _on(self, data: dict[str, Any]) -> None:
        self.messages += 1
        call_id, seq = data.get("call_id"), data.get("seq")
        if seq in self.seqs[call_id]:
            return  # at-least-once delivery: a repeat
        self.seqs[call_id].add(seq)
        self.every_event.append(data)
        if data.get("event") in ("bot_speech_started", "caller_speech_ended", "error"):
            self.events.append(data)

    def received(self, call_id: str) -> int:
        return len(self.seqs.get(call_id, ()))


# -- faults ----------------------------------------------------------------------------------
@dataclass
class Timeline:
    started: float = field(default_factory=time.monotonic)
    entries: list[dict[str, Any]] = field(default_factory=list)

    def at(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def add(self, fault: str, at_s: float, **detail: Any) -> None:
        entry = {"fault": fault, "at_s": at_s, "until_s": self.at(), **detail}
        self.entries.append(entry)
        log.warning("fault %s", json.dumps(entry, ensure_ascii=False))


class Faults:
    """Injects each fault; records what it did in the timeline."""

    def __init__(
        self,
        options: SoakOptions,
        service: ServiceProcess,
        broker: Mosquitto,
        database: dict[str, Any],
        web_url: str,
        timeline: Timeline,
    ):
        self.options = options
        self.service = service
        self.mosquitto = broker
        self.store = database
        self.web_url = web_url
        self.timeline = timeline
        self.killed_call_ids: set[str] = set()  # SIP Call-IDs on the killed worker

    async def inject(self, name: str) -> None:
        at = self.timeline.at()
        await getattr(self, name)(at)

    async def recognizer(self, at: float) -> None:
        before = len(self.service.failures)
        await self.service.command("fail_recognizer", "armed", max_s=30.0)
        deadline = time.monotonic() + 32
        while time.monotonic() < deadline and not self._failed_since(before, "recognizer"):
            await asyncio.sleep(0.2)
        self.timeline.add("recognizer", at, calls_failed=self._failed_since(before, "recognizer"))

    async def synthesizer(self, at: float) -> None:
        before = len(self.service.failures)
        armed = await self.service.command("fail_synthesizer", "armed")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self._failed_since(before, "synthesizer"):
            await asyncio.sleep(0.2)
        self.timeline.add(
            "synthesizer",
            at,
            answers_forgotten=armed.get("forgotten"),
            calls_failed=self._failed_since(before, "synthesizer"),
        )

    def _failed_since(self, before: int, component: str) -> int:
        return sum(1 for f in self.service.failures[before:] if f["component"] == component)

    async def database(self, at: float) -> None:
        seconds = self.options.db_outage_s
        if self.store["kind"] == "sqlite":
            waited = await asyncio.to_thread(hold_sqlite_lock, self.store["path"], seconds)
            self.timeline.add("database", at, kind="sqlite exclusive lock", lock_waited_s=waited)
        else:
            killed = await asyncio.to_thread(
                terminate_connections, self.store["admin"], self.store["name"], seconds
            )
            self.timeline.add(
                "database", at, kind="pg_terminate_backend", connections_terminated=killed
            )

    async def broker(self, at: float) -> None:
        await asyncio.to_thread(self.mosquitto.stop)
        await asyncio.sleep(self.options.broker_outage_s)
        await asyncio.to_thread(self.mosquitto.start)
        self.timeline.add("broker", at, down_s=self.options.broker_outage_s)

    async def worker(self, at: float) -> None:
        status = await self.service.command("workers", "workers")
        victim = max(status["workers"], key=lambda w: len(w["sip_call_ids"]))
        self.killed_call_ids.update(victim["sip_call_ids"])
        os.kill(victim["pid"], signal.SIGKILL)
        restarted = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not restarted:
            await asyncio.sleep(0.5)
            after = await self.service.command("workers", "workers")
            restarted = after["restarts"] > status["restarts"]
        self.timeline.add(
            "worker",
            at,
            pid=victim["pid"],
            calls_on_it=len(victim["sip_call_ids"]),
            restarted=restarted,
        )

    async def web(self, at: float) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BENCH / "web_flood.py"),
            self.web_url,
            *("--seconds", str(self.options.flood_s), "--threads", str(self.options.flood_threads)),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        try:
            result = json.loads(out)
        except json.JSONDecodeError:
            result = {"error": f"web flood exited {proc.returncode}"}
        self.timeline.add("web", at, **result)


def hold_sqlite_lock(path: str, seconds: float) -> float:
    """Another connection takes SQLite's exclusive lock and holds it; returns how long
    it waited for the lock (a write in progress finishes first)."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        started = time.monotonic()
        conn.execute("BEGIN EXCLUSIVE")
        waited = time.monotonic() - started
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return round(waited, 2)


def terminate_connections(admin_url: str, name: str, seconds: float) -> int:
    """Terminate every connection to database ``name``, every second for ``seconds``."""
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    killed = 0
    try:
        deadline = time.monotonic() + seconds
        while True:
            with engine.connect() as conn:
                killed += len(
                    conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": name},
                    ).all()
                )
            if time.monotonic() >= deadline:
                return killed
            time.sleep(1.0)
    finally:
        engine.dispose()


# -- the database -----------------------------------------------------------------------------
@contextlib.contextmanager
def soak_database(options: SoakOptions, work: Path):
    """A fresh store for the run: a SQLite file, or a PostgreSQL database dropped after."""
    if not options.postgres:
        path = work / "voicebot.db"
        yield {"kind": "sqlite", "url": f"sqlite:///{path}", "path": str(path)}
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"voicebot_soak_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN).set(database=name).render_as_string(hide_password=False)
    try:
        yield {"kind": "postgresql", "url": url, "name": name, "admin": POSTGRES_ADMIN}
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def call_rows(url: str) -> dict[str, dict[str, Any]]:
    """Every call row: id -> outcome, ended or not, errors."""
    from sqlalchemy import select

    from dashboards.call_records import Call
    from dashboards.db import Database

    db = Database(url)
    try:
        with db.session() as session:
            rows = session.execute(select(Call.id, Call.outcome, Call.ended_at)).all()
    finally:
        db.dispose()
    return {r.id: {"outcome": r.outcome, "ended": r.ended_at is not None} for r in rows}


# -- the run ----------------------------------------------------------------------------------
async def place_calls(
    options: SoakOptions,
    port: int,
    work: Path,
    until: float,
    results: list[CallerResult],
) -> None:
    """``options.calls`` callers, each calling again as soon as its call ends."""
    bank = QuestionBank()
    scenario = scenario_file(work, options.max_call_s)
    rng = random.Random(options.seed)
    numbers = iter(range(1, 1_000_000))

    async def slot(i: int) -> None:
        await asyncio.sleep(i * 1.5)  # not every caller in the same second
        while time.monotonic() < until:
            caller = Caller(
                next(numbers), port, work, scenario, bank, random.Random(rng.random()),
                options.max_call_s, keep_audio=options.keep or options.work is not None,
            )  # fmt: skip
            results.append(await caller.run())

    await asyncio.gather(*(slot(i) for i in range(options.calls)))


async def run_soak(options: SoakOptions) -> dict[str, Any]:
    """The whole soak run; returns the report."""
    work = options.work or Path(tempfile.mkdtemp(prefix="voicebot-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    SPEECH_CACHE.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(work / "mosquitto", persistent=True)
    broker.start()
    service: ServiceProcess | None = None
    listener = EventListener(broker.port)
    try:
        await listener.start()
        with soak_database(options, work) as database:
            from sipp.sip_harness import free_port

            service = await ServiceProcess.start(
                [
                    *(
                        "--sip-port",
                        str(free_port()),
                        "--web-port",
                        str(free_port(socket.SOCK_STREAM)),
                    ),
                    *("--mqtt-port", str(broker.port), "--database-url", database["url"]),
                    *("--data-dir", str(work / "data")),
                    # pyttsx3 renders every utterance in seconds, into a cache of the
                    # bench's own; Kokoro takes many minutes: its renderings are the user's.
                    *(("--speech-cache", str(SPEECH_CACHE)) if options.tts == "pyttsx3" else ()),
                    *("--max-calls", str(options.calls), "--tts", options.tts),
                    *("--memory-log", str(work / "memory.jsonl")),
                    *("--tracemalloc", str(options.tracemalloc)),
                ],
                work / "service.log",
                work,
            )
            ready = await service.expect("ready", timeout=900)
            report = await soak_with_service(options, work, broker, database, service, ready)
            await listener.settle(report["stopped"]["events_per_call"], timeout=20.0)
            report["database"] = database["kind"]
            rows = call_rows(database["url"])
        if options.keep or options.work:
            details = [dataclasses.asdict(r) for r in report["results"]]
            (work / "callers.json").write_text(
                json.dumps(
                    {
                        "callers": details,
                        "bot_calls": service.calls,
                        "bot_events": listener.every_event,
                    },
                    default=str,
                )
            )
        finish_report(report, rows, service, listener)
    finally:
        if service is not None:
            await service.kill()
        await listener.stop()
        broker.stop()
        if not options.keep and options.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report["work_dir"] = str(work) if options.keep or options.work else None
    return report


async def soak_with_service(
    options: SoakOptions,
    work: Path,
    broker: Mosquitto,
    database: dict[str, Any],
    service: ServiceProcess,
    ready: dict[str, Any],
) -> dict[str, Any]:
    timeline = Timeline()
    faults = Faults(options, service, broker, database, ready["web_url"], timeline)
    duration = options.minutes * 60.0
    results: list[CallerResult] = []
    callers = asyncio.create_task(
        place_calls(options, ready["sip_port"], work, timeline.started + duration, results)
    )
    chosen = [f for f in FAULTS if f in options.faults]

    async def inject_at(at: float, name: str) -> None:
        await asyncio.sleep(max(0.0, timeline.started + at - time.monotonic()))
        await faults.inject(name)

    # Spread over the run: the first once the calls are up, the last well before the end.
    steps = max(1, len(chosen) - 1)
    injections = [
        inject_at(duration * (0.15 + 0.65 * k / steps), name) for k, name in enumerate(chosen)
    ]
    warm: dict[str, Any] = {}

    async def warm_memory() -> None:
        # Every line has carried a whole call: models loaded, caches and arenas in use.
        while len(results) < options.calls and not callers.done():
            await asyncio.sleep(0.5)
        warm.update(await service.command("memory", "memory"))
        warm["rss"] = (await service.command("rss", "rss"))["rss_bytes"]

    warming = asyncio.create_task(warm_memory())
    await asyncio.gather(callers, *injections)
    await warming
    stats_rss = await service.command("rss", "rss")
    end_memory = await service.command("memory", "memory")
    trimmed = await service.command("memory", "memory", trim=True)
    await service.command("stop")
    stopped = await service.expect("stopped", timeout=120)
    return {
        "ready": ready,
        "stopped": stopped,
        "rss_end": stats_rss["rss_bytes"],
        "rss_end_by_process": stats_rss["by_process"],
        "memory_warm": warm,
        "memory_end": end_memory,
        "rss_after_trim": trimmed.get("rss_after_trim"),
        "memory_log": work / "memory.jsonl",
        "timeline": timeline,
        "results": results,
        "killed": faults.killed_call_ids,
        "options": options,
    }


def media_path(
    results: list[CallerResult], service: ServiceProcess, listener: EventListener
) -> dict[str, Any]:
    """Where a caller's wait goes, from the bot's events and the caller's clock (one host):
    ``inbound``: from the end of the caller's speech to where the bot's endpointer put
    it; ``outbound``: from the bot starting to play to the caller hearing it."""
    events: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for event in listener.events:
        events[event["call_id"]].append(event)
    inbound: list[float] = []
    outbound: list[float] = []
    for r in results:
        sid = next((s for s in service.calls if s.startswith(r.tag)), None)
        evs = events.get(service.calls[sid]["call_id"], []) if sid else []
        if not evs:
            continue
        origin = float(np.median([e["wall_time"] - e["t_ms"] / 1000.0 for e in evs]))
        ends = sorted(
            origin + e["last_speech_ms"] / 1000.0
            for e in evs
            if e["event"] == "caller_speech_ended"
        )
        starts = sorted(
            origin + e["t_ms"] / 1000.0 for e in evs if e["event"] == "bot_speech_started"
        )
        for end, wait in r.waits_s:
            spoke_end = end + r.wall_offset
            bot_end = next((t for t in ends if spoke_end - 0.5 < t < spoke_end + 2.0), None)
            if bot_end is None:
                continue
            inbound.append(bot_end - spoke_end)
            bot_start = next((t for t in starts if t > bot_end), None)
            if bot_start is not None and bot_start < spoke_end + wait:
                outbound.append(spoke_end + wait - bot_start)
    return {
        "turns": len(inbound),
        "inbound_p50_s": percentile(inbound, 50),
        "outbound_p50_s": percentile(outbound, 50),
        "outbound_p95_s": percentile(outbound, 95),
    }


def unanswered_silences(r: CallerResult) -> list[tuple[float, float]]:
    """(end, seconds) after each utterance the bot never answered: the silence lasts until
    the caller's next act or the end of the call (a caller who gave up waited that long)."""
    answered = {end for end, _ in r.waits_s}
    acts = r.utterances
    call_end = r.ended_at if r.ended_at is not None else time.monotonic()
    silences = []
    for i, u in enumerate(acts):
        if u.kind == "dtmf" or u.end in answered:
            continue
        following = acts[i + 1].start if i + 1 < len(acts) else call_end
        silences.append((u.end, max(0.0, following - u.end)))
    return silences


def gap_detail(
    r: CallerResult,
    end: float,
    wait: float,
    answered: bool,
    on_killed_worker: bool,
    bot: dict[str, Any] | None,
    listener: EventListener,
    timeline: Timeline,
) -> dict[str, Any]:
    """Where one silence over the threshold happened: when, during which fault, what the
    bot played first and when it started it by its own account (``bot_started_s``, after
    the caller's speech ended) against when the caller heard it (``silence_s``)."""
    at = end - timeline.started
    wall = end + r.wall_offset
    detail: dict[str, Any] = {
        "caller": r.index,
        "at_s": round(at, 1),
        "silence_s": round(wait, 2),
        "answered": answered,
        "on_killed_worker": on_killed_worker,
        "faults": [
            f["fault"] for f in timeline.entries if f["at_s"] - 1 <= at <= f["until_s"] + 10
        ],
    }
    if bot is not None:
        started = sorted(
            (e["wall_time"] - wall, e.get("kind"))
            for e in listener.events
            if e["call_id"] == bot["call_id"] and e["event"] == "bot_speech_started"
        )
        first = next(((t, k) for t, k in started if -0.5 < t < wait + 0.2), None)
        if first is not None:
            detail["bot_started_s"], detail["first_heard"] = round(first[0], 2), first[1]
    return detail


def finish_report(
    report: dict[str, Any],
    rows: dict[str, dict[str, Any]],
    service: ServiceProcess,
    listener: EventListener,
) -> None:
    """Turn what was gathered into the printed figures (in place)."""
    options: SoakOptions = report.pop("options")
    ready, stopped = report.pop("ready"), report.pop("stopped")
    timeline: Timeline = report.pop("timeline")
    results: list[CallerResult] = report.pop("results")
    killed: set[str] = report.pop("killed")
    start = timeline.started

    def sip_id(r: CallerResult) -> str | None:
        return next((s for s in service.calls if s.startswith(r.tag)), None)

    outcomes: collections.Counter[str] = collections.Counter()
    failed: list[dict[str, Any]] = []
    lost_with_worker = 0
    waits_by_minute: dict[int, list[float]] = collections.defaultdict(list)
    gap_callers = inner_gap_callers = gap_callers_alive = 0
    gaps: list[dict[str, Any]] = []
    bot_ids = []
    for r in results:
        sid = sip_id(r)
        bot = service.calls.get(sid) if sid else None
        if bot:
            bot_ids.append(bot["call_id"])
        on_killed_worker = sid in killed
        outcome = rows.get(bot["call_id"], {}).get("outcome") if bot else None
        if not r.answered:
            kind = "not_answered"
        elif r.ended_by == "transfer":
            kind = "transferred"
        elif r.ended_by == "bot_bye" and r.polite:
            kind = "completed"
        elif on_killed_worker:
            kind = "lost_with_killed_worker"
            lost_with_worker += 1
        else:
            kind = "failed"
        outcomes[kind] += 1
        if kind in ("failed", "not_answered"):
            failed.append(
                {
                    "caller": r.index,
                    "ended_by": r.ended_by,
                    "invite_status": r.invite_status,
                    "bot_outcome": outcome,
                    "at_s": round(r.placed_at - start, 1),
                    "sipp": r.sipp_tail[-300:],
                }
            )
        for end, wait in r.waits_s:
            waits_by_minute[int((end - start) // 60)].append(wait)
        silences = [(e, w, True) for e, w in r.waits_s] + [
            (e, w, False) for e, w in unanswered_silences(r)
        ]
        found = [
            gap_detail(r, e, w, answered, on_killed_worker, bot, listener, timeline)
            for e, w, answered in silences
            if w > GAP_S
        ]
        gaps += found
        if found:
            gap_callers += 1
            gap_callers_alive += not on_killed_worker
        if r.inner_gaps_s:
            inner_gap_callers += 1
    bot_latency: dict[int, list[float]] = collections.defaultdict(list)
    wall_start = time.time() - (time.monotonic() - start)
    for event in listener.events:
        if event.get("event") == "bot_speech_started" and event.get("latency_ms") is not None:
            minute = int((event["wall_time"] - wall_start) // 60)
            bot_latency[minute].append(event["latency_ms"] / 1000.0)
    published: dict[str, int] = stopped["events_per_call"]
    events_lost = {c: n - listener.received(c) for c, n in published.items()}
    events_lost = {c: n for c, n in events_lost.items() if n > 0}
    answered_ids = [c["call_id"] for c in service.calls.values()]
    missing = [c for c in answered_ids if c not in rows]
    unfinished = [c for c in answered_ids if c in rows and not rows[c]["ended"]]
    minutes = sorted(set(waits_by_minute) | set(bot_latency))
    report.update(
        {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "note": "shared machine: other work ran at the same time; timings are noisy",
            "minutes": options.minutes,
            "simultaneous_calls": options.calls,
            "tts": options.tts,
            "calls": {
                "started": len(results),
                "answered": sum(r.answered for r in results),
                "completed": outcomes["completed"],
                "transferred": outcomes["transferred"],
                "failed": outcomes["failed"] + outcomes["not_answered"],
                "lost_with_killed_worker": lost_with_worker,
                "answered_by_bot": stopped["calls_answered"],
                "bot_outcomes": dict(
                    collections.Counter(rows[c]["outcome"] for c in answered_ids if c in rows)
                ),
                "failures": failed,
            },
            "silent_gaps": {
                "threshold_s": GAP_S,
                "callers_with_wait_gap": gap_callers,
                "callers_with_wait_gap_not_on_killed_worker": gap_callers_alive,
                "callers_with_gap_inside_bot_speech": inner_gap_callers,
                "callers_with_any_gap": sum(
                    1
                    for r in results
                    if r.inner_gaps_s
                    or any(w > GAP_S for _, w in [*r.waits_s, *unanswered_silences(r)])
                ),
                "waits_over_threshold": len(gaps),
                "waits_over_threshold_unanswered": sum(1 for g in gaps if not g["answered"]),
                "waits_measured": sum(
                    len(r.waits_s) + len(unanswered_silences(r)) for r in results
                ),
                "gaps": gaps,
                "gaps_inside_bot_speech": sum(len(r.inner_gaps_s) for r in results),
                "utterances_without_reply": sum(r.unanswered_utterances for r in results),
                "media_path": media_path(results, service, listener),
                "fillers_played": sum(
                    1
                    for e in listener.events
                    if e.get("event") == "bot_speech_started" and e.get("kind") == "filler"
                ),
            },
            "records": {
                "calls_answered": len(answered_ids),
                "rows": len(rows),
                "lost": len(missing),
                "not_ended": len(unfinished),
                "written_events": stopped["records_written"],
                "dropped_events": stopped["records_dropped"],
                "unwritten_events": stopped["records_unwritten"],
                "write_failures": stopped["record_write_failures"],
            },
            "events": {
                "published": sum(published.values()),
                "received": sum(listener.received(c) for c in published),
                "lost": sum(events_lost.values()),
                "calls_with_lost_events": len(events_lost),
                "left_in_outbox": stopped["mqtt_left_in_outbox"],
                "refused_by_outbox": stopped["mqtt_refused"],
                "messages_incl_repeats": listener.messages,
            },
            "latency_per_minute": [
                {
                    "minute": m,
                    "waits": len(waits_by_minute[m]),
                    "caller_wait_p50_s": percentile(waits_by_minute[m], 50),
                    "caller_wait_p95_s": percentile(waits_by_minute[m], 95),
                    "bot_latency_p50_s": percentile(bot_latency[m], 50),
                    "bot_latency_p95_s": percentile(bot_latency[m], 95),
                }
                for m in minutes
            ],
            "rss_mib": memory_report(report, ready, start, options.calls),
            "component_failures": collections.Counter(f["component"] for f in service.failures),
            "worker_restarts": stopped["worker_restarts"],
            "faults": timeline.entries,
        }
    )


def memory_report(
    report: dict[str, Any], ready: dict[str, Any], start: float, calls: int
) -> dict[str, Any]:
    """The service's memory: at ready, once warm, at the end, and the main process's
    course per minute (from the service's probes; pops what it uses from ``report``).

    The start figure is taken once every line has carried one whole call: loading the
    models, the first recognitions and syntheses, the speech cache and the allocators'
    arenas all grow the process once, and none of that is growth over time. RSS after
    ``malloc_trim`` at the end tells freed-but-kept heap (fragmentation) from live memory.
    """
    warm, end = report.pop("memory_warm"), report.pop("memory_end")
    end_tree = report.pop("rss_end")
    series: dict[int, dict[str, Any]] = {}
    log_path: Path = report.pop("memory_log")
    probes = [json.loads(line) for line in log_path.read_text().splitlines()] if (
        log_path.is_file()
    ) else []  # fmt: skip
    for probe in probes:
        minute = int((probe["at"] - start) // 60) if probe["at"] >= start else -1
        series[minute] = probe  # the last probe of each minute
    warm_tree = warm.get("rss")
    return {
        "start": round(warm_tree / 2**20, 1) if warm_tree else None,
        "start_is": f"after the first {calls} calls ended (every line warm), "
        f"{round(warm['at'] - start)} s into the run"
        if warm
        else "never warm (fewer calls than lines)",
        "end": round(end_tree / 2**20, 1),
        "growth_after_warm_up": round((end_tree - warm_tree) / 2**20, 1) if warm_tree else None,
        "at_ready": round(ready["rss_bytes"] / 2**20, 1),
        "at_ready_by_process": mib(ready["by_process"]),
        "end_by_process": mib(report.pop("rss_end_by_process")),
        "main_process": {
            "warm": mib({k: warm[k] for k in MEMORY_KEYS if k in warm}),
            "end": mib({k: end[k] for k in MEMORY_KEYS if k in end}),
            "end_after_malloc_trim": round((report.pop("rss_after_trim") or 0) / 2**20, 1),
            "gc_objects_warm_end": [warm.get("gc_objects"), end.get("gc_objects")],
            "python_growth_after_warm_up": end.get("python_growth"),
            "threads_warm_end": [warm.get("threads"), end.get("threads")],
            "per_minute": [
                {"minute": m, **mib({k: p[k] for k in MEMORY_KEYS if k in p})}
                for m, p in sorted(series.items())
            ],
        },
    }


MEMORY_KEYS = ("rss", "Anonymous", "malloc_in_use", "malloc_free")


def parse_args(argv: list[str] | None = None) -> SoakOptions:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="how long calls are placed (default 10)"
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=8,
        help="simultaneous SIP calls (default 8: the rated concurrency per 2 cores)",
    )
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated faults to inject, each once (default: all of {','.join(FAULTS)}; "
        "'none' for a plain soak)",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="records in a fresh PostgreSQL database on 127.0.0.1:5432 (trust auth) instead "
        "of SQLite; created and dropped by the bench",
    )
    parser.add_argument(
        "--tts",
        default="pyttsx3",
        choices=["pyttsx3", "kokoro"],
        help="the bot's voice (default pyttsx3: renders in seconds; kokoro needs its cache)",
    )
    parser.add_argument(
        "--max-call", type=float, default=150.0, help="a caller hangs up after this (s)"
    )
    parser.add_argument("--broker-outage", type=float, default=15.0, help="Mosquitto down (s)")
    parser.add_argument("--db-outage", type=float, default=10.0, help="database unavailable (s)")
    parser.add_argument("--flood", type=float, default=15.0, help="web flood length (s)")
    parser.add_argument("--flood-threads", type=int, default=48, help="web flood clients")
    parser.add_argument("--seed", type=int, default=1, help="callers' choices")
    parser.add_argument(
        "--work",
        type=Path,
        help="keep logs, SIP traces, callers.json and what each caller heard (WAV) here",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="the service traces Python allocations (slow: for finding a leak, not for "
        "timings); the report names the sites that grew after warm-up",
    )
    args = parser.parse_args(argv)
    faults = tuple(f for f in args.faults.split(",") if f and f != "none")
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")
    return SoakOptions(
        minutes=args.minutes,
        calls=args.calls,
        faults=faults,
        postgres=args.postgres,
        tts=args.tts,
        max_call_s=args.max_call,
        broker_outage_s=args.broker_outage,
        db_outage_s=args.db_outage,
        flood_s=args.flood,
        flood_threads=args.flood_threads,
        seed=args.seed,
        work=args.work,
        keep=args.keep,
        tracemalloc=args.tracemalloc,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    print(json.dumps(asyncio.run(run_soak(parse_args())), ensure_ascii=False, default=str))
