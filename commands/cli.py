"""The ``voicebot`` command.

Subcommands are small: each parses its arguments and calls into the library, so
that what the CLI does is what the call loop and the web app do too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from faq.city import CityConfigError
from faq.store import FaqLoadError, load_faq
from voicebot.asr.base import RecognizerError
from voicebot.config import ConfigError, Settings, load_settings
from voicebot.evaluation import EvalFileError, evaluate, read_labelled
from voicebot.model_assets import ModelAssetError
from voicebot.tts.base import SynthesisError
from voicebot.understanding import Understanding
from voicebot.wavfile import WavFormatError

log = logging.getLogger("voicebot")

EPILOG = """\
examples:
  voicebot ask "住民税の納付書をなくしました"
  voicebot ask "口座振替にしたいんですが" --json
  voicebot eval tests/data/dev-utterances.tsv
  voicebot faq check path/to/faq-folder
  voicebot call caller.wav --json --out conversation.wav
  voicebot prerender
  voicebot models prepare

configuration:
  settings come from --config FILE, $VOICEBOT_CONFIG or ./voicebot.toml, and
  environment variables such as VOICEBOT_THRESHOLDS__ANSWER=0.8 or
  VOICEBOT_FAQ__DIRECTORY=/srv/faq (environment wins). City facts spoken in
  answers come from $VOICEBOT_CITY or [faq] city_file.
"""


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if getattr(args, "faq_dir", None):
        settings.faq.directory = args.faq_dir
    if getattr(args, "city", None):
        settings.faq.city_file = args.city
    return settings


def cmd_ask(args: argparse.Namespace) -> int:
    """Print what the bot would do with one utterance, and the words a caller would hear.

    The words are the dialogue's (a fresh call, the greeting played): the same reply a
    caller asking this first would get, office hours and all (``--at`` sets the time).
    """
    from voicebot.dialogue import Dialogue

    started = time.perf_counter()
    understanding = Understanding.load(_settings(args))
    loaded = time.perf_counter()
    dialogue = Dialogue(understanding, now=(lambda: args.at) if args.at else None)
    dialogue.start()
    reply = dialogue.on_utterance(args.text)
    done = time.perf_counter()
    decision = reply.decision
    candidates = decision.candidates[:3] if decision else []
    result = {
        "text": args.text,
        "normalized": understanding.match(args.text).normalized,
        "faq_id": decision.faq_id if decision else None,
        "score": round(decision.score, 4) if decision else 0.0,
        "action": decision.action.value if decision else None,
        "intent": decision.intent if decision else None,
        "answer": reply.text,  # what the caller hears
        "parts": list(reply.parts),
        "kind": reply.kind,
        "next": reply.next.value,
        "candidates": [
            {"faq_id": c.faq_id, "title": c.title, "score": c.score, "action": c.action.value}
            for c in candidates
        ],
        "timing_ms": {
            "load": round((loaded - started) * 1000, 1),
            "match": round((done - loaded) * 1000, 2),
        },
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        topic = f"{result['faq_id']} ({result['score']:.2f})" if result["faq_id"] else "-"
        print(
            f"action : {result['action']}\ntopic  : {topic}\n"
            f"reply  : {reply.kind} -> {reply.next.value}\nsay    : {reply.text}"
        )
        for c in candidates:
            print(f"  候補 {c.score:.2f} {c.faq_id} {c.title}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Accuracy on a labelled TSV file."""
    rows = read_labelled(args.file)
    understanding = Understanding.load(_settings(args))
    report = evaluate(understanding, rows)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        return 0
    print(f"accuracy: {report.accuracy:.1%} ({report.correct}/{report.total}) decided")
    print(f"top-1   : {report.top1:.1%} ({report.top1_correct}/{report.total}) first candidate")
    print("per label:")
    for label, (ok, total) in sorted(report.per_label.items()):
        mark = "" if ok == total else "  <"
        print(f"  {label:36s} {ok}/{total}{mark}")
    if report.confusions:
        print("confusions (expected -> got):")
        for (exp, got), n in report.confusions.most_common():
            print(f"  {exp} -> {got}  x{n}")
    print(
        f"answered directly: {report.direct_rate:.1%} ({report.direct}/{report.answerable})"
        " of answerable questions"
    )
    wrong = len(report.wrong_answers)
    print(f"wrong answers: {report.wrong_answer_rate:.1%} ({wrong}/{report.total}) another topic")
    for u in report.wrong_answers:
        print(f"  {u['utterance']}  (expected {u['expected']}, answered {u['answered']})")
    print(f"unsafe answers: {len(report.unsafe)}")
    for u in report.unsafe:
        print(f"  {u['utterance']}  (expected {u['expected']}, answered {u['answered']})")
    return 0


def _parse_time(value: str):
    import datetime as dt

    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from exc
    if when.tzinfo is None:
        from zoneinfo import ZoneInfo

        when = when.replace(tzinfo=ZoneInfo("Asia/Tokyo"))
    return when


def _parse_dtmf(spec: str) -> tuple[float, str]:
    digit, _, at = spec.partition("@")
    if len(digit) != 1 or digit not in "0123456789*#" or not at:
        raise argparse.ArgumentTypeError(f"expected DIGIT@SECONDS, e.g. 0@4.5, got {spec!r}")
    return float(at) * 1000.0, digit


async def _run_call(args: argparse.Namespace, settings: Settings) -> dict:
    from voicebot.bot import Bot
    from voicebot.clock import VirtualClock, WallClock
    from voicebot.events import EventFanout, EventRecorder
    from voicebot.recorded_call import RecordedCaller
    from voicebot.tts.cache import progress_reporter
    from voicebot.wavfile import read_wav

    audio = read_wav(args.wav)
    bot = Bot(settings)
    progress = None if args.quiet else progress_reporter()
    rate = audio.sample_rate if audio.sample_rate in (8000, 16000) else 16000
    await bot.prepare(rates=(rate,), progress=progress)
    clock = WallClock() if args.realtime else VirtualClock()
    caller = RecordedCaller(audio, clock, no_wait=args.no_wait, dtmf=args.dtmf)
    recorder = EventRecorder()
    events = EventFanout(caller, recorder)
    pipeline = await _event_pipeline(args)
    if pipeline is not None:
        events.add(pipeline)
    now = (lambda: args.at) if args.at else None
    session = bot.session(caller, clock, events, **({"now": now} if now else {}))
    try:
        result = await session.run()
    finally:
        if pipeline is not None:
            await pipeline.stop()
            if pipeline.db is not None:
                pipeline.db.dispose()
    if args.out:
        caller.write_stereo(str(args.out))
    out = result.as_dict()
    out["realtime"] = bool(args.realtime)
    out["events"] = len(recorder.events)
    return out


async def _event_pipeline(args: argparse.Namespace):  # -> dashboards.pipeline.EventPipeline
    """Masked events to the call records and MQTT, when configured and installed.

    Records go to the configured database (default: SQLite in the data directory) unless
    ``--no-record``; MQTT when ``[mqtt] host`` is set. The core does not depend on the web
    extra: without it the call runs as before.
    """
    import asyncio
    import importlib.util

    try:
        from dashboards.config import OperationsSettings
        from dashboards.pipeline import EventPipeline

        ops = load_settings(args.config, kind=OperationsSettings)
        db = None
        if args.record and importlib.util.find_spec("dashboards.recorder") is not None:
            from dashboards.db import Database

            try:
                db = Database(ops.database_url())
                await asyncio.to_thread(db.create_all)
            except Exception as exc:  # the call goes on without records
                log.warning("call records unavailable (%s): this call is not stored", exc)
                db = None
        if db is None and not ops.mqtt.host:
            return None
        pipeline = EventPipeline(ops, bus=None, db=db)
    except ImportError as exc:
        log.info("call events are not recorded or published (web extra not installed: %s)", exc)
        return None
    await pipeline.start()
    return pipeline


def cmd_call(args: argparse.Namespace) -> int:
    """Run one whole call on a recorded caller track."""
    import asyncio

    settings = _settings(args)
    result = asyncio.run(_run_call(args, settings))
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    for turn in result["turns"]:
        latency = f"{turn['latency_ms']:.0f} ms" if turn.get("latency_ms") is not None else "-"
        print(f"お客様: {turn['heard'] or '（無音）'}")
        print(f"  → {turn['action']} {turn['faq_id'] or ''} ({turn['score']:.2f}, {latency})")
        print(f"ボット: {turn['said']}")
    print(f"outcome: {result['outcome']}  ({result['duration_ms'] / 1000:.1f} s)")
    if args.out:
        print(f"conversation written to {args.out} (caller left, bot right)")
    return 0


def cmd_faq_check(args: argparse.Namespace) -> int:
    """Validate FAQ files; print every problem."""
    settings = _settings(args)
    from faq.city import load_city

    faq = load_faq(args.directory or settings.faq.directory, city=load_city(settings.faq.city_file))
    for w in faq.warnings:
        print(f"warning: {w}")
    print(f"ok: {len(faq)} entries in {len(set(faq.categories.values()))} categories")
    return 0


PRERENDER_DESCRIPTION = """\
Render every fixed utterance (prompts, FAQ answers, confirmations) into the
on-disk speech cache, so that no caller waits for synthesis.

`voicebot serve` does this too, but only after it starts taking calls: until
its background rendering is done, an answer not yet rendered is synthesised
while the caller waits, and with Kokoro on two cores the first start renders
for 20-40 minutes. Run this before the line is opened: after
installing, after changing the voice or the FAQ files. What is cached is kept,
so a second run renders nothing.
"""

PRERENDER_EPILOG = """\
exit status:
  0    everything is in the cache
  2    the FAQ, the settings or the voice cannot be used
  130  interrupted (what was rendered stays in the cache)

settings: [tts] engine, voice, cache_dir (e.g. VOICEBOT_TTS__CACHE_DIR=/srv/speech);
[faq] directory, city_file. Answers edited in the web app are rendered when published.
"""


def cmd_prerender(args: argparse.Namespace) -> int:
    """Render every fixed utterance into the speech cache; 130 when interrupted."""
    import asyncio

    from faq.city import load_city
    from voicebot.bot import make_synthesizer
    from voicebot.tts.cache import SpeechCache, fixed_utterances, format_duration, progress_reporter

    settings = _settings(args)
    faq = load_faq(settings.faq.directory, city=load_city(settings.faq.city_file))
    # Nothing else runs before the line is opened, so one synthesis per core, each on one
    # thread: on a busy 2-core machine (bench/tts.py --prerender --rounds 3) as fast as one
    # at a time (54 s for the sample) and steadier; on an idle one each gets its own core.
    synthesizer = make_synthesizer(settings, parallel=args.jobs or os.cpu_count() or 1)
    cache = SpeechCache(synthesizer, settings.tts.cache_dir)
    texts = fixed_utterances(faq)
    pending = cache.uncached(texts)
    where = cache.directory / synthesizer.engine
    if not args.quiet:
        print(
            f"rendering {len(pending)} of {len(texts)} utterances ({synthesizer.engine}, "
            f"{getattr(synthesizer, 'parallel', 1)} at a time) into {where}",
            file=sys.stderr,
        )
    progress = None if args.quiet else progress_reporter()
    try:
        result = asyncio.run(cache.prerender(texts, progress))
    except KeyboardInterrupt:
        print("\nvoicebot: interrupted; what was rendered stays in the cache", file=sys.stderr)
        return 130
    print(
        f"speech cache: {result.total} utterances, {result.rendered} rendered now, "
        f"{result.cached} already cached, in {format_duration(result.seconds)} ({where})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicebot",
        description="Voicebot for a city tax hotline (市税の電話窓口): answers from the FAQ, "
        "hands the caller to staff when needed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="settings file (TOML)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--faq-dir", type=Path, help="FAQ folder (default: the shipped FAQ)")
    common.add_argument("--city", type=Path, help="city facts file (default: shipped values)")

    p = sub.add_parser("ask", parents=[common], help="what the bot does with one utterance (text)")
    p.add_argument("text", help="what the caller said, e.g. 納付書をなくしました")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--at", type=_parse_time, help="time of the question (ISO 8601), for business hours"
    )
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser(
        "eval",
        parents=[common],
        help="accuracy on a labelled file (utterance<TAB>expected)",
        description="Decide every utterance of a labelled file as a call would, and report "
        "how many got the right action on the right entry, the confusions, how many "
        "answerable questions were answered without a confirmation, and every answer "
        "given from another topic.",
    )
    p.add_argument(
        "file",
        type=Path,
        help="UTF-8 TSV with a header line: utterance<TAB>expected (an entry id, "
        "control.operator, control.repeat, control.hold, control.resume, control.goodbye "
        "or unknown)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "call",
        parents=[common],
        help="run a whole call on a recorded caller track (WAV)",
        description="Run one call: the bot greets, the caller track plays (after the greeting "
        "unless --no-wait), the bot answers each question. Without --realtime the call runs as "
        "fast as the CPU allows and latencies are measured on a virtual clock.",
    )
    p.add_argument("wav", type=Path, help="caller audio: WAV, 8-48 kHz, PCM/float/μ-law/A-law")
    p.add_argument("--json", action="store_true", help="print turns and outcome as JSON")
    p.add_argument("--out", type=Path, help="write the conversation as stereo WAV")
    p.add_argument("--realtime", action="store_true", help="feed audio at the real pace")
    p.add_argument("--no-wait", action="store_true", help="start the caller during the greeting")
    p.add_argument(
        "--dtmf",
        type=_parse_dtmf,
        action="append",
        metavar="DIGIT@SECONDS",
        help="a key press, seconds after the caller track starts (repeatable)",
    )
    p.add_argument("--at", type=_parse_time, help="time of the call (ISO 8601), for business hours")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-record",
        dest="record",
        action="store_false",
        help="do not store the call in the call records (default: stored, masked)",
    )
    p.set_defaults(func=cmd_call)

    p = sub.add_parser(
        "prerender",
        parents=[common],
        help="render everything the bot says verbatim into the speech cache",
        description=PRERENDER_DESCRIPTION,
        epilog=PRERENDER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="utterances synthesised at once (default: one per core)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prerender)

    p = sub.add_parser("faq", help="FAQ maintenance")
    faq_sub = p.add_subparsers(dest="faq_command", metavar="FAQ_COMMAND", required=True)
    q = faq_sub.add_parser("check", parents=[common], help="validate FAQ files")
    q.add_argument("directory", type=Path, nargs="?", help="FAQ folder to check")
    q.set_defaults(func=cmd_faq_check)

    try:
        from voicebot.models_cli import add_parser as add_models_parser
    except ImportError:  # speech extras not installed
        pass
    else:
        add_models_parser(sub)
    try:
        import dashboards  # noqa: F401  (the web extra: serve and users)
    except ImportError:
        pass
    else:
        from commands.serve_cli import add_parser as add_serve_parser

        add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (
        FaqLoadError,
        CityConfigError,
        ConfigError,
        EvalFileError,
        WavFormatError,
        RecognizerError,
        SynthesisError,
        ModelAssetError,
        FileNotFoundError,
    ) as exc:
        print(f"voicebot: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `voicebot eval ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
