"""Benchmark: does a whole call do the right thing for each phone-channel fixture?

Every fixture (a dev utterance in a Kokoro voice, 8 kHz μ-law) is played as the
caller's only question in its own call on the virtual clock: real VAD, endpointing,
Whisper and dialogue. A call is right when the bot takes the intended action on the
intended FAQ entry (answer / redirect / transfer as the entry says; transfer, repeat or
goodbye for the control intents). Prints JSON with the misses.

    python bench/call_accuracy.py [--voice jf_alpha] [--kokoro]

The bot's own voice is pyttsx3 unless --kokoro (its audio does not affect the result,
and rendering every reply with Kokoro costs about real time on two cores).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.bot import Bot  # noqa: E402
from voicebot.clock import VirtualClock  # noqa: E402
from voicebot.config import Settings  # noqa: E402
from voicebot.events import EventFanout, EventRecorder  # noqa: E402
from voicebot.recorded_call import RecordedCaller  # noqa: E402
from voicebot.wavfile import WavAudio, read_wav  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "audio" / "dev"
OPEN = dt.datetime.fromisoformat("2026-11-24T10:00:00+09:00")  # staff on duty
CONTROL_ACTIONS = {
    "control.operator": "transfer",
    "control.repeat": "repeat",
    "control.goodbye": "goodbye",
}


def run_one(bot: Bot, row: dict[str, str]) -> dict:
    audio = read_wav(FIXTURES / row["file"])
    track = WavAudio(
        np.concatenate([audio.samples, np.zeros(audio.sample_rate * 2, np.int16)]),
        audio.sample_rate,
    )
    clock = VirtualClock()
    caller = RecordedCaller(track, clock)
    session = bot.session(caller, clock, EventFanout(caller, EventRecorder()), now=lambda: OPEN)
    result = asyncio.run(session.run())
    turn = next((t for t in result.turns if t.heard), None)
    expected = row["expected"]
    if expected in CONTROL_ACTIONS:
        want_action, want_id = CONTROL_ACTIONS[expected], None
    else:
        want_action, want_id = bot.understanding.faq[expected].action.value, expected
    got_action = turn.action if turn else None
    got_id = turn.faq_id if turn else None
    return {
        "file": row["file"],
        "utterance": row["utterance"],
        "expected": expected,
        "heard": turn.heard if turn else None,
        "action": got_action,
        "faq_id": got_id,
        "right": got_action == want_action and got_id == want_id,
        "right_topic_confirmed": got_action == "confirm" and got_id == want_id,
        "latency_ms": turn.latency_ms if turn else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--voice", help="only fixtures of this caller voice")
    parser.add_argument("--kokoro", action="store_true", help="the bot speaks with Kokoro")
    args = parser.parse_args()
    settings = Settings()
    if not args.kokoro:
        settings.tts.engine = "pyttsx3"
    bot = Bot(settings)
    asyncio.run(bot.prepare(rates=(8000,)))
    with (FIXTURES / "manifest.tsv").open(encoding="utf-8") as fh:
        rows = [
            r
            for r in csv.DictReader(fh, delimiter="\t")
            if not args.voice or r["voice"] == args.voice
        ]
    started = time.perf_counter()
    results = [run_one(bot, row) for row in rows]
    right = sum(r["right"] for r in results)
    confirmed = sum(r["right_topic_confirmed"] for r in results)
    by_voice: dict[str, list[bool]] = {}
    for row, res in zip(rows, results, strict=True):
        by_voice.setdefault(row["voice"], []).append(res["right"])
    out = {
        "calls": len(results),
        "right": right,
        "accuracy": round(right / len(results), 3),
        "right_topic_but_confirmed": confirmed,
        "right_or_confirmed": round((right + confirmed) / len(results), 3),
        "by_voice": {v: round(sum(x) / len(x), 3) for v, x in by_voice.items()},
        "actions": dict(Counter(r["action"] for r in results)),
        "seconds": round(time.perf_counter() - started, 1),
        "misses": [r for r in results if not r["right"]],
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
