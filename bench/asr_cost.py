"""Benchmark: what each Whisper decoding costs and what it buys, on whole clips.

``record`` recognises every clip of a fixture set once per decoding kind (a hint and a
beam) from one encoder output, and keeps for each: its n-best after the hint-echo filter
and the process CPU it took; then every distinct text's probability without the hint
(one forced alignment, ``WhisperRecognizer.rate_without_hint``) and the CPU of the encoder
and of the alignments. ``replay`` combines recorded decodings as the recogniser would
(a main decoding, then extra ones) and puts each combination through the understanding
and policy, as ``bench/asr_accuracy.py`` does, with the CPU the combination would cost.
So many settings are compared on the same recognitions in seconds.

    python bench/asr_cost.py record --fixtures /tmp/val-audio --out /tmp/val-cost.json
    python bench/asr_cost.py replay /tmp/val-cost.json [--combos NAME ...]
    python bench/asr_cost.py record --kinds titles120/3 --out /tmp/more.json   # then
    python bench/asr_cost.py replay /tmp/val-cost.json /tmp/more.json
    python bench/asr_cost.py replay /tmp/val-cost.json --combos b3+cat-b2+none-b2 --misses

``listen`` adds what the bot hears when it listens to a turn again: for each clip the
shipped decodings (``SHIPPED``) leave unanswered, the understanding asks for a second
decoding after a hint of the topics the turn is near, exactly as a lone call does; the
hint, what was heard and its probability without the hint are kept in the dump, and
``replay`` uses them (``--no-listening`` leaves them out). ``--combo`` listens to the
clips another combination leaves unanswered, beside the ones already kept; a combination
replayed without its own listenings hears nothing new where it asks for another hint:

    python bench/asr_cost.py listen /tmp/val-cost.json --fixtures /tmp/val-audio
    python bench/asr_cost.py listen /tmp/val-cost.json --fixtures /tmp/val-audio --combo NAME

CPU is process time (user + system) around each step, one CTranslate2 thread: the
machine's other work does not count, but a busy machine still slows memory and caches.
Prints JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from faq.city import load_city  # noqa: E402
from faq.store import load_faq  # noqa: E402
from voicebot.asr.whisper import (  # noqa: E402
    HintFreeRatings,
    WhisperRecognizer,
    faq_category_prompt,
    faq_vocabulary_prompt,
)
from voicebot.config import Settings  # noqa: E402
from voicebot.resample import resample  # noqa: E402
from voicebot.understanding import Understanding, undecided  # noqa: E402
from voicebot.wavfile import read_wav  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "audio" / "dev"
CONTROL_ACTIONS = {
    "control.operator": "transfer",
    "control.repeat": "repeat",
    "control.hold": "hold",
    "control.resume": "resume",
    "control.goodbye": "goodbye",
}
# decoding kinds recorded: hint name, beam
KINDS = [
    ("titles160", 5),
    ("titles160", 3),
    ("categories80", 5),
    ("categories80", 2),
    ("none", 5),
    ("none", 2),
]
# combinations replayed: the main decoding, then the extra ones (as while free)
COMBOS: dict[str, tuple[tuple[str, int], ...]] = {
    "today": (("titles160", 5), ("categories80", 5), ("none", 5)),
    "main-only": (("titles160", 5),),
    "main-b3": (("titles160", 3),),
    "main+none": (("titles160", 5), ("none", 5)),
    "main+cat": (("titles160", 5), ("categories80", 5)),
    "main+cat-b2+none-b2": (("titles160", 5), ("categories80", 2), ("none", 2)),
    "main+none-b2": (("titles160", 5), ("none", 2)),
    "main+cat-b2": (("titles160", 5), ("categories80", 2)),
    "b3+cat-b2+none-b2": (("titles160", 3), ("categories80", 2), ("none", 2)),
    "cat-b5+none-b5": (("categories80", 5), ("none", 5)),
    "cat-b5+none-b2": (("categories80", 5), ("none", 2)),
    "b3+cat+none": (("titles160", 3), ("categories80", 5), ("none", 5)),
    "b3+none": (("titles160", 3), ("none", 5)),
    "b3+cat": (("titles160", 3), ("categories80", 5)),
    "b3+none-b2": (("titles160", 3), ("none", 2)),
    "b3+cat-b2": (("titles160", 3), ("categories80", 2)),
    "main+cat+none-b2": (("titles160", 5), ("categories80", 5), ("none", 2)),
    "main+cat-b2+none": (("titles160", 5), ("categories80", 2), ("none", 5)),
    # shorter hints or a smaller beam for the main decoding (recorded with --kinds)
    "t160b2+cat-b2+none-b2": (("titles160", 2), ("categories80", 2), ("none", 2)),
    "t120b3+cat-b2+none-b2": (("titles120", 3), ("categories80", 2), ("none", 2)),
    "t80b3+cat-b2+none-b2": (("titles80", 3), ("categories80", 2), ("none", 2)),
    # no titles hint: the category hint first, the topic hint only when listening again
    "cat-b3+none-b2": (("categories80", 3), ("none", 2)),
    "cat-b2+none-b2": (("categories80", 2), ("none", 2)),
    "cat-b3+none-b3": (("categories80", 3), ("none", 3)),
    "none-b3+cat-b2": (("none", 3), ("categories80", 2)),
}


# Adaptive: the main decoding alone first; the extra ones only when the understanding asks
# for them (what it decides on the main one is not settled), as the live recogniser does.
ADAPTIVE: dict[str, tuple[tuple[str, int], ...]] = {
    "adaptive-b3+cat-b2+none-b2": (("titles160", 3), ("categories80", 2), ("none", 2)),
    "adaptive-b5+cat-b2+none-b2": (("titles160", 5), ("categories80", 2), ("none", 2)),
    "adaptive-b3+cat+none": (("titles160", 3), ("categories80", 5), ("none", 5)),
    "adaptive-b5+cat+none": (("titles160", 5), ("categories80", 5), ("none", 5)),
}
# What the bot decodes while the recogniser is free (the combination ``listen`` extends).
SHIPPED = "b3+cat-b2+none-b2"


def hints(faq) -> dict[str, str | None]:
    return {
        "titles160": faq_vocabulary_prompt(faq),
        "titles120": faq_vocabulary_prompt(faq, 120),
        "titles80": faq_vocabulary_prompt(faq, 80),
        "categories80": faq_category_prompt(faq),
        "none": None,
    }


def cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return 1000.0 * (usage.ru_utime + usage.ru_stime)


def record(args: argparse.Namespace) -> dict:
    faq = load_faq(city=load_city(None))
    prompts = hints(faq)
    rec = WhisperRecognizer(n_best=Settings().asr.n_best)
    rec.load()
    with (args.fixtures / "manifest.tsv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    part, parts = (int(x) for x in args.part.split("/"))
    rows = rows[:: max(1, args.sample)][part - 1 :: parts]
    out = []
    for i, row in enumerate(rows):
        wav = read_wav(args.fixtures / row["file"])
        samples = resample(wav.samples, wav.sample_rate, 16000)
        audio = rec._audio(samples)
        max_new = int(len(audio) / 16000 * 10) + 8
        started = cpu_ms()
        encoded = rec._encode(audio)
        clip = {**row, "encode_cpu_ms": cpu_ms() - started, "audio_s": len(audio) / 16000}
        decodings = {}
        for hint, beam in args.kinds:
            started = cpu_ms()
            heard = rec._decode(encoded, prompts[hint], beam, max_new)
            spent = cpu_ms() - started
            kept = rec._not_echoes(heard, prompts[hint])
            decodings[f"{hint}/{beam}"] = {
                "cpu_ms": spent,
                "heard": [[t, p] for t, p, _ in kept],
                "ids": [list(ids) for _, _, ids in kept],
            }
        texts: dict[str, tuple] = {}
        for d in decodings.values():
            for (t, p), ids in zip(d["heard"], d["ids"], strict=True):
                if t and ids and t not in texts:
                    texts[t] = (t, p, tuple(ids))
        started = cpu_ms()
        clip["unprompted"] = rec._unprompted(encoded, list(texts.values()), len(audio))
        clip["align_cpu_ms_per_text"] = (cpu_ms() - started) / max(1, len(texts))
        for d in decodings.values():
            del d["ids"]
        clip["decodings"] = decodings
        out.append(clip)
        print(i, row["file"], file=sys.stderr, flush=True)
    rec.close()
    args.out.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    return {"clips": len(out), "out": str(args.out)}


class RecordedListening(Mapping[str, float]):
    """A clip's probabilities without the hint, with its second listening as recorded by
    ``listen``: the understanding sees what it saw on the live recogniser."""

    def __init__(
        self,
        ratings: dict[str, float],
        listened: dict[str, dict],
        plain: str | None = None,
        more: tuple[tuple[str, ...], dict[str, float], str | None] | None = None,
        audio_ms: float | None = None,
    ):
        self._ratings = dict(ratings)
        self._listened = listened
        # the first reading of the decoding with no hint, when it is a hypothesis, as live
        self.plain = plain if plain in self._ratings else None
        # adaptive: the extra decodings' texts, their ratings and plain reading, on demand
        self._more = more
        self.heard_more = False
        self.audio_ms = audio_ms

    @property
    def can_hear_more(self) -> bool:
        return self._more is not None

    def hear_more(self) -> tuple[str, ...]:
        if self._more is None:
            return ()
        texts, ratings, plain = self._more
        if not self.heard_more:
            self._ratings.update(ratings)
            if self.plain is None and plain in self._ratings:
                self.plain = plain
            self.heard_more = True
        return texts

    def __getitem__(self, text: str) -> float:
        return self._ratings[text]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ratings)

    def __len__(self) -> int:
        return len(self._ratings)

    def rate_all(self, texts=None) -> dict[str, float]:
        if texts is None:
            return dict(self._ratings)
        return {t: self._ratings[t] for t in texts if t in self._ratings}

    def listen_again(self, hint: str) -> tuple[str, ...]:
        heard = self._listened.get(hint)
        if heard is None:  # the combination replayed asked for another hint: not recorded
            return ()
        self._ratings.update(heard["unprompted"])
        return tuple(heard["heard"])


def live_evidence(
    rec: WhisperRecognizer,
    encoded: object,
    n_samples: int,
    recorded: dict[str, float],
    texts: list[str],
) -> tuple[HintFreeRatings, dict[str, dict]]:
    """Ratings as the live recogniser makes them for one clip (recorded probabilities for
    the recorded texts, a forced pass for new ones, a real decoding after a new hint),
    and the record of each hint decoded (its CPU)."""
    found: dict[str, dict] = {}

    def rate(hypotheses):
        new = [h for h in hypotheses if h[0] not in recorded]
        rated = rec._unprompted(encoded, new, n_samples) if new else {}
        return {t: recorded.get(t, rated.get(t, 0.0)) for t, _, _ in hypotheses}

    def decode(hint):
        started = cpu_ms()
        heard = rec._decode(encoded, hint, rec.busy_beam_size, int(n_samples / 16000 * 10) + 8)
        found[hint] = {"cpu_ms": cpu_ms() - started}
        return heard

    return HintFreeRatings({t: (0,) for t in texts}, rate, decode), found


def listen(args: argparse.Namespace) -> dict:
    """Each undecided clip's second listening, made by the live recogniser and
    understanding, kept in the dump (rewritten in place)."""
    understanding = Understanding.load(Settings())
    rec = WhisperRecognizer(n_best=Settings().asr.n_best)
    rec.load()
    clips = json.loads(args.dump.read_text(encoding="utf-8"))
    kinds = COMBOS[args.combo]
    listened_to, cpu = 0, []
    for i, clip in enumerate(clips):
        if args.combo == SHIPPED:
            clip.pop("listened", None)
        if any(f"{h}/{b}" not in clip["decodings"] for h, b in kinds):
            continue  # this part of the dump was recorded without one of the kinds
        decision, distinct, _ = decide(understanding, clip, kinds, listening=False)
        if not undecided(decision):  # the bot listens again to these only
            continue
        wav = read_wav(args.fixtures / clip["file"])
        audio = rec._audio(resample(wav.samples, wav.sample_rate, 16000))
        encoded = rec._encode(audio)
        ratings, found = live_evidence(rec, encoded, len(audio), clip["unprompted"], distinct)
        text, alternatives, confidence = heard_in(clip, kinds)
        understanding.understand(text, alternatives, confidence, ratings)
        for hint, entry in found.items():
            texts = ratings.listen_again(hint)
            entry["heard"] = list(texts)
            entry["unprompted"] = {t: ratings[t] for t in texts}
            cpu.append(entry["cpu_ms"])
        # hints are keyed by their text: another combination's listenings stay beside these
        clip["listened"] = {**clip.get("listened", {}), **found}
        listened_to += 1
        print(i, clip["file"], file=sys.stderr, flush=True)
    rec.close()
    args.dump.write_text(json.dumps(clips, ensure_ascii=False), encoding="utf-8")
    return {
        "clips": len(clips),
        "listened_again": listened_to,
        "decode_cpu_ms_mean": round(statistics.mean(cpu), 1) if cpu else None,
    }


def outcome(decision, expected: str, faq) -> dict[str, bool]:
    """As bench/asr_accuracy.py counts a clip."""
    got = (decision.action.value, decision.faq_id)
    if expected in CONTROL_ACTIONS:
        right = got == (CONTROL_ACTIONS[expected], None)
    elif expected == "unknown":
        right = got[0] not in ("answer", "redirect")
    else:
        right = got == (faq[expected].action.value, expected)
    entry = faq.get(expected)
    answerable = entry is not None and entry.action.value in ("answer", "redirect")
    spoke = got[0] in ("answer", "redirect")
    offered = (got[0] == "confirm" and decision.faq_id == expected) or (
        got[0] == "choose" and expected in decision.choices
    )
    return {
        "right": right or offered,
        "wrong": spoke and (decision.faq_id != expected or not right),
        "answerable": answerable,
        "direct": answerable and spoke and right,
    }


def load_dumps(paths: list[Path]) -> list[dict]:
    """Clips of one or more dumps; dumps of the same fixtures with other kinds join theirs."""
    clips: dict[str, dict] = {}
    for path in paths:
        for clip in json.loads(path.read_text(encoding="utf-8")):
            known = clips.setdefault(clip["file"], clip)
            if known is not clip:
                known["decodings"].update(clip["decodings"])
                known["unprompted"].update(clip["unprompted"])
    return list(clips.values())


def kind(text: str) -> tuple[str, int]:
    """'titles120/3' -> ('titles120', 3)."""
    hint, _, beam = text.partition("/")
    return hint, int(beam)


def replay(args: argparse.Namespace) -> dict:
    understanding = Understanding.load(Settings())
    faq = understanding.faq
    clips = load_dumps(args.dump)
    out: dict = {"clips": len(clips), "combos": {}}
    extras_used: dict[str, int] = {}
    for name in args.combos or [*COMBOS, *ADAPTIVE]:
        kinds = COMBOS.get(name) or ADAPTIVE[name]
        by_condition: dict[str, list[dict]] = {}
        cpu, aligned_all, aligned_needed = [], [], []
        misses: list[dict] = []
        for clip in clips:
            adaptive = name in ADAPTIVE
            decision, distinct, more = decide(
                understanding, clip, kinds, not args.no_listening, adaptive
            )
            used = kinds if not adaptive or more else kinds[:1]
            extras_used[name] = extras_used.get(name, 0) + bool(adaptive and more)
            o = outcome(decision, clip["expected"], faq)
            if args.misses and (o["wrong"] or not o["right"]):
                misses.append(
                    {
                        "file": clip["file"],
                        "expected": clip["expected"],
                        "action": decision.action.value,
                        "faq_id": decision.faq_id,
                        "wrong": o["wrong"],
                        "heard": distinct[:3],
                    }
                )
            by_condition.setdefault(clip["file"].split("/")[0], []).append(o)
            decode = sum(clip["decodings"][f"{h}/{b}"]["cpu_ms"] for h, b in used)
            per_text = clip["align_cpu_ms_per_text"]
            aligned_all.append(len(distinct) * per_text)
            needed = decision.action.value in ("answer", "redirect")
            aligned_needed.append(per_text if needed and distinct else 0.0)
            cpu.append(clip["encode_cpu_ms"] + decode)
        figures = {}
        for cond, outs in by_condition.items():
            answerable = [o for o in outs if o["answerable"]]
            figures[cond] = {
                "right": round(sum(o["right"] for o in outs) / len(outs), 3),
                "wrong": round(sum(o["wrong"] for o in outs) / len(outs), 3),
                "direct": round(sum(o["direct"] for o in answerable) / max(1, len(answerable)), 3),
            }
        out["combos"][name] = {
            **figures,
            "cpu_ms_encode_decode": round(statistics.mean(cpu), 1),
            "cpu_ms_align_all": round(statistics.mean(aligned_all), 1),
            "cpu_ms_align_needed": round(statistics.mean(aligned_needed), 1),
        }
        if args.misses:
            out["combos"][name]["misses"] = misses
        if name in ADAPTIVE:
            out["combos"][name]["extras_on"] = round(extras_used.get(name, 0) / len(clips), 3)
    return out


def heard_in(clip: dict, kinds) -> tuple[str, tuple[str, ...], float | None]:
    """The first hypothesis of ``kinds``' recorded decodings, the other distinct ones and
    the first one's probability, as the recogniser reports them."""
    decodings = [clip["decodings"][f"{hint}/{beam}"] for hint, beam in kinds]
    heard = [h for d in decodings for h in d["heard"]]
    text, confidence = heard[0] if heard else ("", None)
    distinct = list(dict.fromkeys(t for t, _ in heard if t))
    return text, tuple(t for t in distinct if t != text), confidence


def decide(
    understanding, clip: dict, kinds, listening: bool = True, adaptive: bool = False
) -> tuple:
    """The policy's decision on ``kinds``' recorded decodings of ``clip``, their texts,
    and whether the extra decodings were asked for.

    With ``listening`` and a second listening recorded for the clip (``listen``), the
    understanding may listen again as on the live recogniser (what ``listen`` did not
    record for this combination is heard as nothing new). ``adaptive``: the first kind
    is decoded at once and the others only when the understanding asks for them, as the
    live recogniser does (``extras_on_demand``).
    """
    main, extras = (kinds[:1], kinds[1:]) if adaptive else (kinds, ())
    text, alternatives, confidence = heard_in(clip, main)
    distinct = [t for t in (text, *alternatives) if t]
    more = None
    if extras:
        first, extra_alts, _ = heard_in(clip, extras)
        extra_texts = tuple(t for t in dict.fromkeys((first, *extra_alts)) if t)
        more = (
            extra_texts,
            {t: clip["unprompted"][t] for t in extra_texts},
            plain_of(clip, extras),
        )
    unprompted = RecordedListening(
        {t: clip["unprompted"][t] for t in distinct},
        clip.get("listened", {}) if listening else {},
        plain_of(clip, main),
        more,
        1000.0 * clip["audio_s"],
    )
    # as on a live call: prepared in a worker thread, then decided on the call loop
    understanding.understand(text, alternatives, confidence, unprompted)
    _, decision = understanding.understand(text, alternatives, confidence, unprompted)
    if unprompted.heard_more:
        distinct = list(dict.fromkeys([*distinct, *more[0]]))
    return decision, distinct, unprompted.heard_more


def plain_of(clip: dict, kinds) -> str | None:
    """The first reading of the first of ``kinds`` decoded with no hint."""
    for hint, beam in kinds:
        heard = clip["decodings"][f"{hint}/{beam}"]["heard"]
        if hint == "none" and heard:
            return heard[0][0]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="recognise every clip once per decoding kind")
    rec.add_argument("--fixtures", type=Path, default=FIXTURES, help="folder with manifest.tsv")
    rec.add_argument("--out", type=Path, required=True, help="JSON file to write")
    rec.add_argument("--sample", type=int, default=1, help="every n-th clip only")
    rec.add_argument("--part", default="1/1", help="k/n: the k-th of n interleaved parts")
    rec.add_argument(
        "--kinds",
        nargs="+",
        type=kind,
        default=KINDS,
        help="decodings as hint/beam (hints: titles160, titles120, titles80, categories80, "
        "none); default: " + " ".join(f"{h}/{b}" for h, b in KINDS),
    )
    rep = sub.add_parser("replay", help="combine recorded decodings and decide")
    rep.add_argument(
        "dump", type=Path, nargs="+", help="JSON written by record (several: their kinds join)"
    )
    rep.add_argument("--combos", nargs="*", help=f"names among: {', '.join([*COMBOS, *ADAPTIVE])}")
    rep.add_argument(
        "--misses",
        action="store_true",
        help="list each clip not right or answered wrongly (file, expected, decision, heard)",
    )
    rep.add_argument(
        "--no-listening",
        action="store_true",
        help="leave out the second listening recorded by 'listen' (the bot before it)",
    )
    lis = sub.add_parser(
        "listen", help="add the second listening of the clips left unanswered to a dump"
    )
    lis.add_argument("dump", type=Path, help="JSON written by record (rewritten in place)")
    lis.add_argument("--fixtures", type=Path, default=FIXTURES, help="folder with manifest.tsv")
    lis.add_argument(
        "--combo",
        choices=list(COMBOS),
        default=SHIPPED,
        help="the combination whose undecided clips are listened to again; another than "
        f"{SHIPPED} adds its listenings beside the ones already recorded",
    )
    args = parser.parse_args()
    commands = {"record": record, "replay": replay, "listen": listen}
    result = commands[args.command](args)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
