"""CPU cost of SIP calls: sipp places simultaneous calls to the bot's SIP endpoint.

Each sipp caller streams a recorded question (RTP from sipp's rtp_stream, 8 kHz μ-law),
stays on the line for --hold seconds, then hangs up. The CPU time of the bot's process
(event loop, VAD, Whisper, the dispatcher) and of its SIP worker processes (pjsua, the
conference bridge, frames to and from the bot) is measured over the calls and printed as
JSON: CPU seconds per call, percent of one core per concurrent call, and the wall time
from the first INVITE until the last call has ended.

``--echo`` answers with a bare echo instead of the bot: the cost of the SIP/RTP transport
alone.

    python bench/sip_load.py                 # 8 simultaneous calls, the real bot
    python bench/sip_load.py --echo
    python bench/sip_load.py --calls 8 --max-calls 4   # 4 answered, 4 refused with 503
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sipp.sip_harness import AUDIO, OfficeHoursBot, free_port, run_sipp  # noqa: E402

from telephony.config import SipSettings, TelephonySettings  # noqa: E402
from telephony.sip_endpoint import SipEndpoint  # noqa: E402
from voicebot.config import Settings  # noqa: E402
from voicebot.events import EventRecorder, IntentDecided  # noqa: E402
from voicebot.frames import AudioFrame  # noqa: E402
from voicebot.switchboard import Switchboard  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running child process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers_cpu_seconds(endpoint: SipEndpoint) -> float:
    return sum(process_cpu_seconds(w.pid) for w in endpoint.workers)


async def echo(transport, caller, call_id) -> None:
    while (frame := await transport.receive()) is not None:
        if isinstance(frame, AudioFrame):
            await transport.send(frame)


async def main(args: argparse.Namespace) -> dict:
    events = EventRecorder()
    if args.echo:
        on_call = echo
    else:
        settings = Settings()
        settings.tts.engine = args.tts
        if args.tts == "pyttsx3":
            settings.tts.cache_dir = Path(tempfile.mkdtemp(prefix="sip-bench-cache-"))
        bot = OfficeHoursBot(settings)
        await bot.prepare(rates=(8000,))
        on_call = Switchboard(bot, events).handle
    max_calls = args.max_calls or args.calls
    endpoint = SipEndpoint(TelephonySettings(sip=SipSettings(port=0, max_calls=max_calls)), on_call)
    await endpoint.start()
    work = Path(tempfile.mkdtemp(prefix="sip-bench-"))
    shutil.copy(AUDIO / "jf_alpha" / "051.wav", work / "question.wav")
    cpu0, workers0, wall0 = cpu_seconds(), workers_cpu_seconds(endpoint), time.perf_counter()
    run = await run_sipp(
        "uac_load.xml",
        endpoint.port,
        work,
        calls=args.calls,
        extra=["-d", str(int(args.hold * 1000)), "-mp", str(free_port())],
        timeout_s=args.hold + 120,
    )
    while endpoint.transports:  # the last BYEs are being processed
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - wall0
    main_cpu = cpu_seconds() - cpu0
    workers_cpu = workers_cpu_seconds(endpoint) - workers0
    cpu = main_cpu + workers_cpu
    workers = len(endpoint.workers)
    await endpoint.stop()
    answered = endpoint.calls_answered
    refused = run.messages.count("SIP/2.0 503 Service Unavailable")
    answers = sum(1 for e in events.of_type(IntentDecided) if e.action == "answer")
    concurrent = min(args.calls, max_calls)
    return {
        "mode": "echo" if args.echo else f"bot ({args.tts})",
        "calls_offered": args.calls,
        "calls_answered": answered,
        "calls_refused_503": refused,
        "sip_workers": workers,
        "sipp_ok": run.returncode == 0,
        "bot_answers": None if args.echo else answers,
        "hold_s": args.hold,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_s_bot_process": round(main_cpu, 2),
        "cpu_s_sip_workers": round(workers_cpu, 2),
        "cpu_s_per_call": round(cpu / max(answered, 1), 3),
        "core_pct_per_concurrent_call": round(100 * cpu / wall / max(concurrent, 1), 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=8, help="calls placed at once")
    parser.add_argument(
        "--max-calls", type=int, help="the bot's [sip] max_calls (default: --calls)"
    )
    parser.add_argument("--hold", type=float, default=25.0, help="seconds each call lasts")
    parser.add_argument("--echo", action="store_true", help="echo instead of the bot")
    parser.add_argument("--tts", default="pyttsx3", choices=["pyttsx3", "kokoro"])
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(main(parser.parse_args())), ensure_ascii=False))
