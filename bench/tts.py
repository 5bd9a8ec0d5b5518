"""Benchmark: Kokoro synthesis speed, time to first audio, and speech-cache hit latency.

Prints JSON. The text is a typical four-sentence FAQ answer with dates and counts. Time to
first audio is compared for synthesising the whole answer (what a caller waits for without
streaming) and for `SpeechCache.stream`, which yields the first sentence as soon as it is
ready. The load average is printed too: the figures are only comparable on an idle machine.

    python bench/tts.py [--repeat 3] [--voice jf_alpha] [--entry juminzei.payment-schedule]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
import time

from faq.store import load_faq
from voicebot.tts.cache import SpeechCache, split_sentences
from voicebot.tts.kokoro import KokoroSynthesizer, load_model


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--voice", default="jf_alpha")
    parser.add_argument("--entry", default="juminzei.payment-schedule")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
