"""Benchmark: does a whole call do the right thing for each phone-channel fixture?

Every fixture (a dev utterance in a Kokoro voice, 8 kHz μ-law) is played as the
caller's only question in its own call on the virtual clock: real VAD, endpointing,
Whisper and dialogue. A call is right when the bot takes the intended action on the
intended FAQ entry (answer / redirect / transfer as the entry says; transfer, repeat or
goodbye for the control intents). Prints JSON with the misses.

    python bench/call_accuracy.py [--voice jf_alpha] [--kokoro] [--sample 4]
                                  [--transcripts cache.json] [--fixtures DIR]
                                  [--dump calls.json]

A confirmation ("…についてのご質問でよろしいでしょうか") of the right entry is not
right: the caller should get the intended action at once; such calls are counted apart
(``right_topic_but_confirmed``). ``--fixtures`` runs another set made the same way
(a manifest.tsv with file, voice, utterance, expected); ``expected`` may be
``unknown`` (right unless the bot answers from the FAQ). ``wrong_answers`` counts the
calls where the bot spoke an answer or redirect that was not the one asked for (what a
caller would act on); ``answered_directly`` is the share of answerable questions
answered at once; ``by_condition`` gives these per first folder of the fixtures' paths
(e.g. ``clean`` and ``hard`` from ``bench/make_eval_audio.py``).

The bot's own voice is pyttsx3 unless --kokoro (its audio does not affect the result,
and rendering every reply with Kokoro costs about real time on two cores).

``--transcripts FILE`` keeps every recognition (text and n-best, keyed by a hash of the
audio and the recogniser settings) in FILE and reuses it on the next run, so that
matching and policy changes can be measured in seconds; recognition settings changes
miss the cache and recognise again. ``recognition_ms`` is the mean measured Whisper time
of the recognitions made in this run (cached ones excluded); judge it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import hashlib
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.asr.base import Recognizer, Transcript  # noqa: E402
from voicebot.bot import Bot, make_recognizer  # noqa: E402
from voicebot.clock import VirtualClock  # noqa: E402
from voicebot.config import Settings  # noqa: E402
from voicebot.events import EventFanout, EventRecorder  # noqa: E402
from voicebot.recorded_call import RecordedCaller  # noqa: E402
from voicebot.wavfile import WavAudio, read_wav  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "audio" / "dev"
OPEN = dt.datetime.fromisoformat("2026-11-24T10:00:00+09:00")  # staff on duty
UNKNOWN = "unknown"
CONTROL_ACTIONS = {
    "control.operator": "transfer",
    "control.repeat": "repeat",
    "control.hold": "hold",
    "control.resume": "resume",
    "control.goodbye": "goodbye",
}


class CachedRecognizer:
    """Replays recognitions of identical audio from a JSON file; recognises the rest."""

    def __init__(self, inner: Recognizer, path: Path, settings_key: str):
        self.inner = inner
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self.path = path
        self.settings_key = settings_key
        self.cache: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}
        self.fresh_ms: list[float] = []
        self.heard: list[dict] = []  # recognitions of the current call

    def load(self) -> None:
        load = getattr(self.inner, "load", None)
        if load is not None:
            load()

    async def transcribe(self, samples: np.ndarray) -> Transcript:
        digest = hashlib.sha1(self.settings_key.encode() + samples.tobytes()).hexdigest()
        hit = self.cache.get(digest)
        if hit is not None:
            self.heard.append(hit)
            return Transcript(
                text=hit["text"],
                alternatives=tuple(hit["alternatives"]),
                audio_ms=hit["audio_ms"],
                processing_ms=hit["processing_ms"],
                confidence=hit.get("confidence"),
                unprompted=hit.get("unprompted", {}),
            )
        t = await self.inner.transcribe(samples)
        self.fresh_ms.append(t.processing_ms)
        self.cache[digest] = {
            "text": t.text,
            "alternatives": list(t.alternatives),
            "audio_ms": t.audio_ms,
            "processing_ms": t.processing_ms,
            "confidence": t.confidence,
            "unprompted": every_rating(t.unprompted),
        }
        self.heard.append(self.cache[digest])
        return t

    def save(self) -> None:
        self.path.write_text(json.dumps(self.cache, ensure_ascii=False))


def every_rating(unprompted: Mapping[str, float]) -> dict[str, float]:
    """Every hypothesis' rating without the hint, as plain JSON (Whisper rates on demand)."""
    rate_all = getattr(unprompted, "rate_all", None)
    return rate_all() if rate_all is not None else dict(unprompted)


def run_one(bot: Bot, row: dict[str, str], fixtures: Path = FIXTURES) -> dict:
    audio = read_wav(fixtures / row["file"])
    track = WavAudio(
        np.concatenate([audio.samples, np.zeros(audio.sample_rate * 2, np.int16)]),
        audio.sample_rate,
    )
    heard_log = getattr(bot.recognizer, "heard", None)
    if heard_log is not None:
        heard_log.clear()
    clock = VirtualClock()
    caller = RecordedCaller(track, clock)
    session = bot.session(caller, clock, EventFanout(caller, EventRecorder()), now=lambda: OPEN)
    result = asyncio.run(session.run())
    turn = next((t for t in result.turns if t.heard), None)
    expected = row["expected"]
    got_action = turn.action if turn else None
    got_id = turn.faq_id if turn else None
    if expected in CONTROL_ACTIONS:
        want_action, want_id = CONTROL_ACTIONS[expected], None
    elif expected == UNKNOWN:  # not in the FAQ: right unless an FAQ answer is given
        want_action, want_id = got_action, got_id
        if got_action in ("answer", "redirect"):
            want_action = "no answer"
    else:
        want_action, want_id = bot.understanding.faq[expected].action.value, expected
    return {
        "file": row["file"],
        "utterance": row["utterance"],
        "expected": expected,
        "heard": turn.heard if turn else None,
        "action": got_action,
        "faq_id": got_id,
        "score": turn.score if turn else None,
        "recognized": [[h["text"], *h["alternatives"]] for h in heard_log]
        if heard_log is not None
        else None,
        "right": got_action == want_action and got_id == want_id,
        # a confirmation of the right entry, or a question offering it among two
        "right_topic_confirmed": (got_action == "confirm" and got_id == want_id)
        or (
            got_action == "choose"
            and want_id is not None
            and want_id in (turn.choices if turn else ())
        ),
        # spoke an FAQ answer (or redirect) that was not the one asked for
        "wrong_answer": got_action in ("answer", "redirect")
        and (got_action != want_action or got_id != want_id),
        "answerable": want_action in ("answer", "redirect") and want_id is not None,
        "latency_ms": turn.latency_ms if turn else None,
    }


def condition_figures(results: list[dict]) -> dict:
    """Right (a confirmation of the right entry counted as right), wrong answers, and the
    share of answerable questions answered at once, for one folder of fixtures."""
    n = len(results)
    answerable = [r for r in results if r["answerable"]]
    return {
        "calls": n,
        "right_or_confirmed": round(
            sum(r["right"] or r["right_topic_confirmed"] for r in results) / n, 3
        ),
        "wrong_answer_rate": round(sum(r["wrong_answer"] for r in results) / n, 3),
        "answered_directly": round(sum(r["right"] for r in answerable) / len(answerable), 3)
        if answerable
        else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--voice", help="only fixtures of this caller voice")
    parser.add_argument("--kokoro", action="store_true", help="the bot speaks with Kokoro")
    parser.add_argument(
        "--fixtures",
        type=Path,
        default=FIXTURES,
        help="folder with manifest.tsv (file, voice, utterance, expected) and the WAVs",
    )
    parser.add_argument("--sample", type=int, default=1, help="every n-th fixture only")
    parser.add_argument("--transcripts", type=Path, help="recognition cache (JSON) to reuse")
    parser.add_argument("--dump", type=Path, help="write every call's result (JSON) here")
    args = parser.parse_args()
    settings = Settings()
    if not args.kokoro:
        settings.tts.engine = "pyttsx3"
    recognizer = None
    if args.transcripts:
        from voicebot.understanding import Understanding

        understanding = Understanding.load(settings)
        inner = make_recognizer(settings, understanding.faq)
        key = json.dumps(
            {
                **settings.asr.model_dump(mode="json"),
                "prompt": getattr(inner, "initial_prompt", ""),
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        recognizer = CachedRecognizer(inner, args.transcripts, key)
        bot = Bot(settings, understanding=understanding, recognizer=recognizer)
    else:
        bot = Bot(settings)
    asyncio.run(bot.prepare(rates=(8000,)))
    with (args.fixtures / "manifest.tsv").open(encoding="utf-8") as fh:
        rows = [
            r
            for r in csv.DictReader(fh, delimiter="\t")
            if not args.voice or r["voice"] == args.voice
        ][:: max(1, args.sample)]
    started = time.perf_counter()
    results = [run_one(bot, row, args.fixtures) for row in rows]
    if recognizer is not None:
        recognizer.save()
    if args.dump:
        args.dump.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    right = sum(r["right"] for r in results)
    confirmed = sum(r["right_topic_confirmed"] for r in results)
    by_voice: dict[str, list[bool]] = {}
    by_condition: dict[str, list[dict]] = {}
    for row, res in zip(rows, results, strict=True):
        by_voice.setdefault(row["voice"], []).append(res["right"])
        by_condition.setdefault(row["file"].split("/")[0], []).append(res)
    answerable = [r for r in results if r["answerable"]]
    out = {
        "calls": len(results),
        "right": right,
        "accuracy": round(right / len(results), 3),
        "right_topic_but_confirmed": confirmed,
        "right_or_confirmed": round((right + confirmed) / len(results), 3),
        "wrong_answers": sum(r["wrong_answer"] for r in results),
        "wrong_answer_rate": round(sum(r["wrong_answer"] for r in results) / len(results), 3),
        "answered_directly": round(sum(r["right"] for r in answerable) / len(answerable), 3)
        if answerable
        else None,
        "by_voice": {v: round(sum(x) / len(x), 3) for v, x in by_voice.items()},
        "by_condition": {c: condition_figures(rs) for c, rs in by_condition.items()},
        "actions": dict(Counter(r["action"] for r in results)),
        "seconds": round(time.perf_counter() - started, 1),
        "recognition_ms": round(statistics.mean(recognizer.fresh_ms), 1)
        if recognizer is not None and recognizer.fresh_ms
        else None,
        "misses": [r for r in results if not r["right"]],
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
