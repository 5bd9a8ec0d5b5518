"""The whole voicebot service for the soak bench, in its own process, with fault hooks.

It is ``voicebot serve`` composed in-process (``commands.service.start_service``: SIP
dispatcher and pjsua workers, WebRTC, the web app, call records, MQTT events), with three
differences that only a bench needs:

* the bot's recogniser and synthesiser are wrapped (bench/fault_injection.py) so that
  they fail when the bench asks;
* the dialogue's clock is fixed inside the city's office hours, so that transfers to
  staff are offered whenever the bench runs;
* the bench talks to it over standard input and output (JSON lines), never over the
  network: commands ``fail_recognizer``, ``fail_synthesizer``, ``workers``, ``rss`` and
  ``stop``; reports ``ready``, each call's ``call`` (bot call id, SIP Call-ID, worker),
  each ``component_failed``, and ``stopped`` with the counters of every part.

    python bench/soak_service.py --help   (started by bench/soak.py)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import gc
import json
import logging
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fault_injection import (  # noqa: E402
    FaultyRecognizer,
    FaultySynthesizer,
    ForgetfulSpeechCache,
    ForgetfulVoice,
)
from process_tree import tree_rss_by_process, tree_rss_bytes  # noqa: E402

import voicebot.bot  # noqa: E402
from commands import native_memory  # noqa: E402
from commands.service import ServeOptions, start_service, stop_service  # noqa: E402
from dashboards.config import (  # noqa: E402
    DatabaseSettings,
    MqttSettings,
    OperationsSettings,
    WebSettings,
)
from telephony.config import SipSettings, TelephonySettings, TransferSettings  # noqa: E402
from voicebot.config import Settings  # noqa: E402
from voicebot.events import CallEvent, ComponentFailed  # noqa: E402

log = logging.getLogger("soak_service")

# A Tuesday morning in Japan: the dialogue offers staff whatever the time of the run.
OFFICE_HOURS = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
_RealBot = voicebot.bot.Bot


class SoakBot(_RealBot):  # type: ignore[misc, valid-type]
    """The real bot with failing-on-demand parts and a clock inside office hours."""

    def __init__(self, settings: Settings, *args: Any, **kwargs: Any):
        super().__init__(settings, *args, **kwargs)
        self.recognizer = FaultyRecognizer(self.recognizer)
        self.synthesizer = FaultySynthesizer(self.synthesizer)
        self.speech_cache = ForgetfulSpeechCache(self.synthesizer, settings.tts.cache_dir)
        self.voice = ForgetfulVoice(self.speech_cache)

    def session(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        kwargs.setdefault("now", lambda: OFFICE_HOURS)
        return super().session(*args, **kwargs)


class EventCounter:
    """EventSink after masking, beside the MQTT publisher: what was handed to it, per call."""

    def __init__(self, on_failure: Any):
        self.per_call: collections.Counter[str] = collections.Counter()
        self.on_failure = on_failure

    def emit(self, event: CallEvent) -> None:
        self.per_call[event.call_id] += 1
        if isinstance(event, ComponentFailed):
            self.on_failure(event)


def smaps_rollup() -> dict[str, int]:
    """This process's resident memory by kind (anonymous or file-backed), in bytes."""
    kinds: dict[str, int] = {}
    try:
        with open("/proc/self/smaps_rollup") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("Rss", "Anonymous", "Pss_File", "Pss_Anon"):
                    kinds[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return kinds


def memory_probe(trim: bool = False, objects: bool = False) -> dict[str, Any]:
    """Where this process's memory is: what malloc holds for live objects and what it
    holds free (fragmentation), Python's own objects, tracemalloc's count if tracing; with
    ``trim`` the RSS after ``malloc_trim`` gives free heap back (what stays is live);
    ``objects`` counts the objects the garbage collector tracks."""
    info = native_memory.malloc_info() or {}
    probe: dict[str, Any] = {
        "at": time.monotonic(),
        "rss": tree_rss_by_process(os.getpid()).get(f"{os.getpid()} python", 0),
        **smaps_rollup(),
        "malloc_in_use": info.get("in_use", 0),
        "malloc_free": info.get("free", 0),
        "malloc_heap": info.get("heap", 0),
        "threads": threading.active_count(),
    }
    if objects:  # walks every object under the GIL: not in the periodic samples
        probe["gc_objects"] = len(gc.get_objects())
    if tracemalloc.is_tracing():
        probe["python_traced"] = tracemalloc.get_traced_memory()[0]
    if trim:
        native_memory.trim()
        probe["rss_after_trim"] = smaps_rollup().get("Rss", 0)
    return probe


def top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> list[str]:
    """The Python allocation sites that grew most between two snapshots."""
    stats = after.compare_to(before, "traceback")
    return [
        f"{s.size_diff / 2**20:+.1f} MiB {s.count_diff:+d} blocks "
        + " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in s.traceback[:4])
        for s in stats[:15]
    ]


async def sample_memory(path: Path, every_s: float) -> None:
    """A memory probe every ``every_s`` seconds, one JSON line each, to ``path``."""
    while True:
        probe = memory_probe()  # a few /proc reads and mallinfo2: well under a millisecond
        with path.open("a") as fh:
            fh.write(json.dumps(probe) + "\n")
        await asyncio.sleep(every_s)


def report(kind: str, **data: Any) -> None:
    """One JSON line to the bench."""
    sys.stdout.write(json.dumps({"type": kind, **data}, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def settings_from(args: argparse.Namespace) -> tuple[Settings, TelephonySettings, Any]:
    core = Settings()
    core.tts.engine = args.tts
    if args.tts == "kokoro":
        core.tts.voice = "jf_alpha"
    if args.speech_cache is not None:
        core.tts.cache_dir = args.speech_cache
    telephony = TelephonySettings(
        sip=SipSettings(port=args.sip_port, allowed_peers=["127.0.0.1"], max_calls=args.max_calls),
        transfer=TransferSettings(targets=[args.transfer_target]),
    )
    ops = OperationsSettings(
        data_dir=args.data_dir,
        web=WebSettings(port=args.web_port, initial_admin_password=args.admin_password),
        database=DatabaseSettings(url=args.database_url),
        mqtt=MqttSettings(host="127.0.0.1", port=args.mqtt_port, site="soak"),
    )
    return core, telephony, ops


async def run(args: argparse.Namespace) -> None:
    voicebot.bot.Bot = SoakBot  # start_service builds the bot it finds there
    core, telephony, ops = settings_from(args)
    service = await start_service(core, telephony, ops, ServeOptions(grace_s=args.grace))
    bot: SoakBot = service.bot
    if bot.rendering is not None:
        await bot.rendering  # every answer on disk: only a forgotten text is synthesised
    failures: list[dict[str, Any]] = []

    def on_failure(event: ComponentFailed) -> None:
        failures.append({"call_id": event.call_id, "component": event.component})
        report("component_failed", call_id=event.call_id, component=event.component)
        if event.component == "recognizer":
            bot.recognizer.disarm()

    counter = EventCounter(on_failure)
    service.pipeline.add(counter)
    sip = service.sip
    answer_call = sip.on_call

    async def on_call(transport: Any, caller: Any, call_id: str) -> Any:
        report(
            "call",
            call_id=call_id,
            sip_call_id=transport.leg.sip_call_id,
            worker=transport.leg.link.index,
        )
        return await answer_call(transport, caller, call_id)

    sip.on_call = on_call
    snapshots: list[tracemalloc.Snapshot] = []  # the first one (warm), with --tracemalloc
    sampler = None
    if args.memory_log is not None:
        sampler = asyncio.create_task(sample_memory(args.memory_log, args.memory_every))
    report(
        "ready",
        pid=os.getpid(),
        sip_port=sip.port,
        web_url=service.web_url,
        workers=[w.pid for w in sip.workers],
        rss_bytes=tree_rss_bytes(os.getpid()),
        by_process=tree_rss_by_process(os.getpid()),
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        name = command["cmd"]
        if name == "fail_recognizer":
            bot.recognizer.arm(command.get("max_s", 30.0))
            report("armed", fault="recognizer")
        elif name == "fail_synthesizer":
            answers = [bot.understanding.faq.answer_text(e) for e in bot.understanding.faq]
            bot.synthesizer.arm()
            bot.speech_cache.forget(answers)
            bot.voice.forget(answers)
            report("armed", fault="synthesizer", forgotten=len(answers))
        elif name == "workers":
            workers = [
                {
                    "index": w.index,
                    "pid": w.pid,
                    "sip_call_ids": [leg.sip_call_id for leg in w.legs.values()],
                }
                for w in sip.workers
            ]
            report("workers", workers=workers, restarts=sip.worker_restarts)
        elif name == "rss":
            report(
                "rss",
                rss_bytes=tree_rss_bytes(os.getpid()),
                by_process=tree_rss_by_process(os.getpid()),
            )
        elif name == "memory":
            probe = memory_probe(trim=command.get("trim", False), objects=True)
            if tracemalloc.is_tracing():
                snapshot = tracemalloc.take_snapshot()
                if snapshots:
                    probe["python_growth"] = top_growth(snapshots[0], snapshot)
                snapshots[:] = [snapshots[0] if snapshots else snapshot]
            report("memory", **probe)
        elif name == "stop":
            break
    rss_end = tree_rss_bytes(os.getpid())
    if sampler is not None:
        sampler.cancel()
    calls_answered = sip.calls_answered
    restarts = sip.worker_restarts
    await stop_service(service, args.grace)
    publisher = service.pipeline.publisher
    recorder = service.pipeline.recorder
    report(
        "stopped",
        rss_bytes_before_stop=rss_end,
        calls_answered=calls_answered,
        calls_finished=service.switchboard.finished,
        worker_restarts=restarts,
        events_per_call=dict(counter.per_call),
        component_failures=failures,
        recognizer_faults_raised=bot.recognizer.raised,
        synthesizer_faults_raised=bot.synthesizer.raised,
        mqtt_sent=publisher.sent if publisher else None,
        mqtt_refused=publisher.refused if publisher else None,
        mqtt_left_in_outbox=len(publisher.outbox) if publisher and publisher.outbox else 0,
        records_written=recorder.written if recorder else None,
        records_dropped=recorder.dropped if recorder else None,
        records_unwritten=recorder.unwritten if recorder else None,
        record_write_failures=recorder.failures if recorder else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sip-port", type=int, required=True)
    parser.add_argument("--web-port", type=int, required=True)
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument(
        "--speech-cache", type=Path, help="rendered speech (default: the user's speech cache)"
    )
    parser.add_argument("--max-calls", type=int, default=8)
    parser.add_argument("--tts", default="pyttsx3", choices=["pyttsx3", "kokoro"])
    parser.add_argument("--transfer-target", default="sip:staff@127.0.0.1:5099")
    parser.add_argument("--admin-password", default="soak-bench-admin-password")
    parser.add_argument("--grace", type=float, default=20.0)
    parser.add_argument("--memory-log", type=Path, help="memory probes here, as JSON lines")
    parser.add_argument("--memory-every", type=float, default=10.0, help="seconds between probes")
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace Python allocations (this many frames; slow): the memory command "
        "then names the sites that grew since its first use",
    )
    args = parser.parse_args()
    if args.tracemalloc:
        tracemalloc.start(args.tracemalloc)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
