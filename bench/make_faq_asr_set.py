"""Make a tuning set of real recognition output from the FAQ's own example questions.

Every FAQ entry contributes up to three of its example questions (the 1st, 3rd and 5th, when
present). Each is spoken by Kokoro in a voice the test fixtures do not use (alternating
jf_gongitsune and jf_nezumi), passed through the same phone channel as the recorded-caller
fixtures (tests/fixtures/make_caller_audio.py: 8 kHz, 300-3400 Hz band-pass, μ-law), upsampled
to 16 kHz and recognised by Whisper. The evaluation utterances (tests/data/*-utterances.tsv) are
not used.

Writes bench/data/faq-asr-transcripts.tsv with the columns entry_id, question_index (0-based
index into the entry's questions), voice, question, transcript. Run from the project root:

    .venv/bin/python bench/make_faq_asr_set.py [--limit N] [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

from make_caller_audio import LINE_RATE, phone_channel  # noqa: E402

from faq.store import load_faq  # noqa: E402
from voicebot.asr.whisper import WhisperRecognizer  # noqa: E402
from voicebot.resample import resample  # noqa: E402
from voicebot.tts.kokoro import KokoroSynthesizer, load_model  # noqa: E402

OUT = ROOT / "bench" / "data" / "faq-asr-transcripts.tsv"
VOICES = ("jf_gongitsune", "jf_nezumi")
QUESTION_INDICES = (0, 2, 4)  # the 1st, 3rd and 5th example question of each entry
ASR_RATE = 16000
HEADER = ("entry_id", "question_index", "voice", "question", "transcript")


def select_questions(faq) -> list[tuple[str, int, str]]:
    """(entry id, index in entry.questions, question) for every entry, at most three each."""
    chosen: list[tuple[str, int, str]] = []
    for entry in faq:
        for index in QUESTION_INDICES:
            if index < len(entry.questions):
                chosen.append((entry.id, index, entry.questions[index]))
    return chosen


def clean(text: str) -> str:
    """Keep a TSV cell on one line and free of tabs."""
    return " ".join(text.replace("\t", " ").split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="only the first N questions (for a quick try)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    questions = select_questions(load_faq())[: args.limit]
    started = time.perf_counter()
    load_model()
    synths = {voice: KokoroSynthesizer(voice) for voice in VOICES}
    rec = WhisperRecognizer(pad_seconds=1.5, beam_size=2)
    rec.load()
    print(
        f"{len(questions)} questions; models loaded in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
        flush=True,
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tts_s = asr_s = audio_s = 0.0
    with args.out.open("w", encoding="utf-8", newline="") as fh:
        fh.write("\t".join(HEADER) + "\n")
        fh.flush()
        for number, (entry_id, index, question) in enumerate(questions, start=1):
            voice = VOICES[(number - 1) % len(VOICES)]
            t0 = time.perf_counter()
            speech = synths[voice].synthesize_blocking(question)
            t1 = time.perf_counter()
            line = phone_channel(speech.samples, speech.sample_rate)
            samples16k = resample(line, LINE_RATE, ASR_RATE)
            transcript = rec.transcribe_sync(samples16k).text
            t2 = time.perf_counter()
            tts_s += t1 - t0
            asr_s += t2 - t1
            audio_s += speech.duration_ms / 1000
            row = (entry_id, str(index), voice, clean(question), clean(transcript))
            fh.write("\t".join(row) + "\n")
            fh.flush()
            print(
                f"[{number}/{len(questions)}] {entry_id}#{index} {voice} "
                f"tts {t1 - t0:.1f}s asr {t2 - t1:.1f}s: {question} -> {transcript}",
                file=sys.stderr,
                flush=True,
            )

    total = time.perf_counter() - started
    print(
        f"wrote {len(questions)} rows to {args.out} in {total:.1f}s "
        f"(audio {audio_s:.1f}s, synthesis {tts_s:.1f}s, recognition {asr_s:.1f}s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
