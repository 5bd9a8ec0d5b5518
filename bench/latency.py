"""Benchmark: reply latency of whole calls, alone and with several calls at once.

Latency is the time from the caller's last speech frame to the first audio frame of the
decided reply, as ``voicebot call`` reports it; ``first_sound`` is the wait until the
first bot audio of any kind (the acknowledgement 「はい。」 or a filler when the reply was
not ready in time), and ``acknowledged_share`` the share of turns that heard one. Calls
are built from the phone-channel fixtures (Kokoro voices through 300-3400 Hz, 8 kHz,
μ-law): several questions per call separated by pauses. With ``--realtime`` (the
default for concurrency) audio is fed at the real pace and latency is wall-clock time;
calls in one process share the models.

    python bench/latency.py                 # 1, 4 and 8 simultaneous calls, realtime
    python bench/latency.py --virtual       # one call at a time on the virtual clock

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "data" / "audio" / "dev"
TURN_GAP_S = 2.5  # silence after each question: room for the answer to start

sys.path.insert(0, str(ROOT))

from voicebot.bot import Bot  # noqa: E402
from voicebot.clock import VirtualClock, WallClock  # noqa: E402
from voicebot.config import Settings  # noqa: E402
from voicebot.events import EventFanout, EventRecorder  # noqa: E402
from voicebot.recorded_call import RecordedCaller  # noqa: E402
from voicebot.turn import Turn  # noqa: E402
from voicebot.wavfile import WavAudio, read_wav  # noqa: E402


def fixture_rows() -> list[dict[str, str]]:
    with (FIXTURES / "manifest.tsv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def build_call(rows: list[dict[str, str]], line_noise_dbfs: float | None = None) -> WavAudio:
    """Questions one after another, each followed by a pause for the answer... and a bit more.

    The fixtures' pauses are digital silence; ``line_noise_dbfs`` adds white noise at that
    level to the whole call, as an idle phone line (about -65 dBFS) or a noisy room has."""
    parts = []
    rate = 8000
    for row in rows:
        audio = read_wav(FIXTURES / row["file"])
        rate = audio.sample_rate
        parts += [audio.samples, np.zeros(int(TURN_GAP_S * rate), dtype=np.int16)]
    samples = np.concatenate(parts)
    if line_noise_dbfs is not None:
        noise = np.random.default_rng(len(samples)).standard_normal(len(samples))
        noise *= 32768.0 * 10.0 ** (line_noise_dbfs / 20.0)
        samples = np.clip(samples + np.round(noise), -32768, 32767).astype(np.int16)
    return WavAudio(samples, rate)


def pick_questions(
    rows: list[dict[str, str]], n: int, rng: random.Random, answerable: set[str]
) -> list[dict[str, str]]:
    """Questions the bot answers itself (staff topics, operator and goodbye end the call)."""
    usable = [r for r in rows if r["expected"] in answerable]
    return rng.sample(usable, n)


async def one_call(bot: Bot, audio: WavAudio, realtime: bool) -> list[Turn]:
    """The call's turns that heard the caller and were replied to."""
    clock = WallClock() if realtime else VirtualClock()
    caller = RecordedCaller(audio, clock)
    at = __import__("datetime").datetime.fromisoformat("2026-11-24T10:00:00+09:00")
    session = bot.session(caller, clock, EventFanout(caller, EventRecorder()), now=lambda: at)
    result = await session.run()
    return [t for t in result.turns if t.latency_ms is not None and t.heard]


def cpu_model() -> str:
    """The processor's name, for the figures' context."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def summary(latencies: list[float]) -> dict[str, float]:
    if len(latencies) < 2:
        return {"n": len(latencies)}
    q = statistics.quantiles(latencies, n=20, method="inclusive")
    return {
        "n": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(q[18], 1),
        "max_ms": round(max(latencies), 1),
    }


async def main_async(args: argparse.Namespace) -> dict:
    settings = Settings()
    if args.workers is not None:
        settings.asr.workers = args.workers
    settings.tts.engine = args.tts
    bot = Bot(settings)
    t0 = time.perf_counter()
    await bot.prepare(rates=(8000,))
    prepare_s = time.perf_counter() - t0
    rows = fixture_rows()
    rng = random.Random(7)
    answerable = {e.id for e in bot.understanding.faq if e.action.value == "answer"}
    out: dict = {
        "cpu": cpu_model(),
        "machine_cores": os.cpu_count(),
        "isa": os.environ.get("CT2_FORCE_CPU_ISA", "auto"),
        "asr": {
            "backend": settings.asr.backend,
            "beam_size": settings.asr.beam_size,
            "busy_beam_size": settings.asr.busy_beam_size,
            "pad_seconds": settings.asr.pad_seconds,
            "cpu_threads": settings.asr.cpu_threads,
            "vocabulary": settings.asr.vocabulary,
            "workers": settings.asr.workers,
            "extra_hints": settings.asr.extra_hints,
            "extras_on_demand": settings.asr.extras_on_demand,
        },
        "tts": settings.tts.engine,
        "short_pause_ms": settings.call.endpointing.short_pause_ms,
        "speculation_decode_after_ms": settings.call.speculation_decode_after_ms,
        "endpointing_end_silence_ms": settings.call.endpointing.end_silence_ms,
        "prepare_s": round(prepare_s, 1),
        "line_noise_dbfs": args.line_noise_dbfs,
        "runs": {},
    }
    for n_calls in args.calls:
        calls = [
            build_call(pick_questions(rows, args.questions, rng, answerable), args.line_noise_dbfs)
            for _ in range(n_calls)
        ]
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        if args.virtual:
            results = [await one_call(bot, c, realtime=False) for c in calls]
        else:
            results = await asyncio.gather(*(one_call(bot, c, realtime=True) for c in calls))
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        turns = [t for r in results for t in r]
        latencies = [t.latency_ms for t in turns]
        # The caller's silence as heard: until the first bot sound, an acknowledgement
        # (「はい。」) or a filler when the reply was not ready in time.
        first_sound = [t.first_audio_ms for t in turns if t.first_audio_ms is not None]
        out["runs"][str(n_calls)] = {
            **summary(latencies),
            "first_sound": summary(first_sound),
            "acknowledged_share": (
                round(sum(t.fillers > 0 for t in turns) / len(turns), 3) if turns else None
            ),
            "calls": n_calls,
            "mode": "virtual" if args.virtual else "realtime",
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 2),
            "cpu_s_per_call": round(cpu / n_calls, 2),
            # the whole process (recognition, VAD, matching, playout) per caller turn heard
            "cpu_ms_per_turn": round(1000 * cpu / len(latencies), 1) if latencies else None,
        }
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument(
        "--questions",
        type=int,
        default=4,
        help="questions per call (above 12 a call ends at the dialogue's turn limit)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="parallel recognitions (default: the setting)"
    )
    parser.add_argument("--virtual", action="store_true", help="virtual clock, calls one by one")
    parser.add_argument(
        "--line-noise-dbfs",
        type=float,
        default=None,
        help="white noise at this level over the whole call (default: none, the pauses are\n"
        "digital silence); -65 is an idle phone line, -45 a noisy room",
    )
    parser.add_argument(
        "--tts",
        choices=("kokoro", "pyttsx3"),
        default="kokoro",
        help="the bot's voice; every reply is rendered before the calls either way, so the\n"
        "latency is the same, but pyttsx3 renders in seconds instead of ~25 minutes",
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
