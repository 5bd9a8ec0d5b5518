"""On-disk cache of rendered speech, so fixed utterances play without waiting for synthesis.

Almost everything the bot says is fixed text: the prompts and the FAQ answers. Kokoro needs
about as long as the audio lasts to render it on a small CPU, which is far too slow to answer
a caller, so the bot renders every fixed utterance once at start-up (`prerender`) and plays
it from disk afterwards. Text that is not cached (a new answer, an edited FAQ) is rendered
sentence by sentence (on a call by ``voicebot.reply_stream``, here by `stream` and by the
background rendering), so the caller hears the first sentence while the rest renders.

Entries are 16-bit WAV files named by the sha256 of everything that changes the audio:
engine, voice, sample rate, the spoken-text rules' version and the text. Changing any of
them simply misses the cache; stale files are harmless. Files are written to a temporary
name and renamed, so a crash never leaves a half-written entry under a real name, and an
unreadable file is logged, deleted and rendered again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import string
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from voicebot import prompts
from voicebot.tts.base import Speech, Synthesizer
from voicebot.tts.priority import BACKGROUND, background_rendering, current_priority
from voicebot.tts.spoken_text import SPOKEN_TEXT_VERSION
from voicebot.wavfile import WavFormatError, read_wav, write_wav

if TYPE_CHECKING:
    from faq.model import FaqEntry
    from faq.store import Faq

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "VOICEBOT_CACHE_DIR"
DEFAULT_SENTENCE_PAUSE_MS = 350.0  # what Kokoro itself puts between sentences

# A sentence ends at 。！？ (or their ASCII forms); closing quotes stay with their sentence.
_SENTENCE_END = re.compile(r"(?<=[。！？!?])(?![」』）)])")

ProgressCallback = Callable[[int, int, str], None]  # (done, total, text just finished)


def default_cache_dir() -> Path:
    """``$VOICEBOT_CACHE_DIR/speech``, else ``~/.cache/taxline-voicebot/speech``."""
    base = os.environ.get(CACHE_DIR_ENV)
    root = Path(base) if base else Path.home() / ".cache" / "taxline-voicebot"
    return root / "speech"


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, each with its final punctuation; blank pieces are dropped."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]


def answer_order(faq: Faq) -> list[FaqEntry]:
    """The entries in the order their speech is rendered: likely questions first.

    No usage figures reach the core, so the order comes from how the FAQ is written: each
    file is one category and opens with its most general entry (the overview of a tax,
    office hours, ways to pay), so the first entry of every category comes first, then the
    second of every category, and so on, categories in FAQ order.
    """
    by_category: dict[str, list[FaqEntry]] = {}
    for entry in faq:
        by_category.setdefault(faq.categories.get(entry.id, ""), []).append(entry)
    ranks = list(by_category.values())
    depth = max((len(entries) for entries in ranks), default=0)
    return [entries[i] for i in range(depth) for entries in ranks if i < len(entries)]


def fixed_utterances(faq: Faq, per_entry: bool = True) -> list[str]:
    """Every text the bot speaks verbatim, without duplicates, in the order to render them.

    The prompts of `voicebot.prompts` that every call may need (templates filled from the
    city facts), then each FAQ answer in `answer_order`, then the per-entry prompts
    (CONFIRM_TOPIC and the choice between two titles) in the same order: an answer is spoken
    whenever its question is asked, a confirmation only when the match was uncertain.
    Each dialogue reply is spoken as separate parts (e.g. REPEAT_PREFIX, then the answer), so
    these are exactly the texts that get synthesised. With ``per_entry=False`` only the
    prompts every call may need (greeting, re-prompts, transfer notices, goodbye): what must
    be ready before the first call is taken.
    """
    city = faq.city.values()
    texts: list[str] = []
    per_title: list[str] = []
    for name, template in vars(prompts).items():
        if not (name.isupper() and isinstance(template, str)):
            continue
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        if not fields:
            texts.append(template)
        elif fields <= set(city):
            texts.append(template.format_map(city))
        elif fields <= set(city) | {"title"}:
            per_title.append(template)
        else:
            log.debug("prompt %s has run-time placeholders %s; not pre-rendered", name, fields)
    if per_entry:
        entries = answer_order(faq)
        texts.extend(faq.answer_text(entry) for entry in entries)
        for entry in entries:
            texts.extend(t.format_map({**city, "title": entry.title}) for t in per_title)
    return list(dict.fromkeys(texts))


@dataclass(frozen=True)
class PrerenderResult:
    """What `SpeechCache.prerender` did."""

    total: int
    rendered: int  # synthesised now
    cached: int  # already on disk
    seconds: float


class SpeechCache:
    """Rendered speech of one synthesiser (engine + voice + rate), kept on disk."""

    def __init__(
        self,
        synthesizer: Synthesizer,
        directory: str | os.PathLike[str] | None = None,
        sentence_pause_ms: float = DEFAULT_SENTENCE_PAUSE_MS,
    ) -> None:
        self.synthesizer = synthesizer
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.sentence_pause_ms = sentence_pause_ms
        self._in_flight: dict[str, asyncio.Future[Speech]] = {}  # shared syntheses by key
        # Syntheses made so far, for estimates of how long the rest will take.
        self.synthesized_chars = 0
        self.synthesis_seconds = 0.0

    def key(self, text: str) -> str:
        """sha256 over everything that changes the audio of `text`."""
        synth = self.synthesizer
        fields = [synth.engine, synth.voice, synth.sample_rate, SPOKEN_TEXT_VERSION, text]
        return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()

    def path(self, text: str) -> Path:
        """Where the audio of `text` is (or would be) stored."""
        key = self.key(text)
        return self.directory / self.synthesizer.engine / key[:2] / f"{key}.wav"

    def get(self, text: str) -> Speech | None:
        """The cached audio of `text`, or None. A corrupt entry is deleted and reported as None."""
        path = self.path(text)
        try:
            audio = read_wav(path)
        except FileNotFoundError:
            return None
        except (OSError, WavFormatError) as exc:
            log.warning(
                "speech cache: ignoring unreadable %s (%s); it will be re-rendered", path, exc
            )
            path.unlink(missing_ok=True)
            return None
        if audio.sample_rate != self.synthesizer.sample_rate or len(audio.samples) == 0:
            log.warning(
                "speech cache: ignoring %s (%d samples at %d Hz, expected audio at %d Hz)",
                path,
                len(audio.samples),
                audio.sample_rate,
                self.synthesizer.sample_rate,
            )
            path.unlink(missing_ok=True)
            return None
        return Speech(audio.samples, audio.sample_rate)

    def put(self, text: str, speech: Speech) -> Path:
        """Store `speech` as the audio of `text` (atomically: temporary file, then rename)."""
        path = self.path(text)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:8]}-", suffix=".tmp")
        os.close(fd)
        try:
            write_wav(tmp, np.asarray(speech.samples, dtype=np.int16), speech.sample_rate)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    async def render(self, text: str) -> Speech:
        """The audio of `text`: from disk if cached, else synthesised and stored.

        Concurrent requests for the same uncached text share one synthesis, and a caller
        that is cancelled (barge-in) does not cancel it for the others.
        """
        cached = await asyncio.to_thread(self.get, text)
        if cached is not None:
            return cached
        key = self.key(text)
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._synthesize_and_store(text))
            self._in_flight[key] = task
            task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(task)

    async def _synthesize_and_store(self, text: str) -> Speech:
        started = time.perf_counter()
        if current_priority() == BACKGROUND:
            speech = await self._synthesize_by_sentence(text)
        else:
            speech = await self.synthesizer.synthesize(text)
        self.synthesis_seconds += time.perf_counter() - started
        self.synthesized_chars += len(text)
        if len(speech.samples):
            await asyncio.to_thread(self.put, text, speech)
        return speech

    def uncached(self, texts: Iterable[str]) -> list[str]:
        """The texts with no file in the cache yet (by name only: cheap, not validated)."""
        return [t for t in dict.fromkeys(texts) if not self.path(t).exists()]

    def estimate_seconds(self, texts: Iterable[str], parallel: int = 1) -> float | None:
        """Seconds to render the uncached `texts`, from the syntheses made so far.

        Rendering time grows with the length of the text (an answer takes several times
        as long as a prompt), so the estimate is seconds per character so far times the
        characters left. None before anything was synthesised.
        """
        if self.synthesized_chars == 0:
            return None
        left = sum(len(t) for t in self.uncached(texts))
        return left * self.synthesis_seconds / self.synthesized_chars / max(parallel, 1)

    async def _synthesize_by_sentence(self, text: str) -> Speech:
        """The whole text, one sentence per synthesis, joined by the engine's own pause.

        Background rendering goes this way so that a caller's synthesis never waits behind
        more than one sentence of it.
        """
        sentences = split_sentences(text)
        if len(sentences) < 2:
            return await self.synthesizer.synthesize(text)
        pieces = [piece async for piece in self._sentence_pieces(sentences)]
        return Speech(np.concatenate(pieces), self.synthesizer.sample_rate)

    async def _sentence_pieces(self, sentences: list[str]) -> AsyncIterator[np.ndarray]:
        """Each sentence synthesised in turn, all but the last followed by the pause."""
        rate = self.synthesizer.sample_rate
        pause = np.zeros(round(self.sentence_pause_ms * rate / 1000.0), dtype=np.int16)
        for index, sentence in enumerate(sentences):
            speech = await self.synthesizer.synthesize(sentence)
            samples = np.asarray(speech.samples, dtype=np.int16)
            if index < len(sentences) - 1 and len(samples):
                samples = np.concatenate([samples, pause])
            yield samples

    async def prerender(
        self,
        texts: Iterable[str],
        progress: ProgressCallback | None = None,
        parallel: int | None = None,
    ) -> PrerenderResult:
        """Make sure every text is cached (the start-up step); `progress` is told after each.

        Texts are taken in the given order, ``parallel`` at a time (default: as many as
        the synthesiser runs at once, its ``parallel`` attribute, else one).
        """
        unique = list(dict.fromkeys(texts))
        workers = max(1, parallel or getattr(self.synthesizer, "parallel", 1))
        started = time.perf_counter()
        rendered = cached = done = 0
        queue = iter(unique)  # shared by the workers: each text is taken once

        async def work() -> None:
            nonlocal rendered, cached, done
            for text in queue:
                if await asyncio.to_thread(self.get, text) is not None:  # drops corrupt files
                    cached += 1
                else:
                    await self.render(text)
                    rendered += 1
                done += 1
                if progress is not None:
                    progress(done, len(unique), text)

        with background_rendering():  # a caller's synthesis goes first
            async with asyncio.TaskGroup() as group:
                for _ in range(min(workers, len(unique))):
                    group.create_task(work())
        return PrerenderResult(len(unique), rendered, cached, time.perf_counter() - started)

    async def stream(self, text: str) -> AsyncIterator[Speech]:
        """Yield the audio of `text` so playback can start early.

        Cached text comes out in one piece. Otherwise each sentence is synthesised and yielded
        in turn, followed by the pause the engine would put between sentences; once all are
        done the whole utterance is stored, so the next request is a cache hit.
        """
        cached = await asyncio.to_thread(self.get, text)
        if cached is not None:
            yield cached
            return
        rate = self.synthesizer.sample_rate
        pieces: list[np.ndarray] = []
        async for samples in self._sentence_pieces(split_sentences(text)):
            pieces.append(samples)
            yield Speech(samples, rate)
        whole = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
        if len(whole):
            await asyncio.to_thread(self.put, text, Speech(whole, rate))


def format_duration(seconds: float) -> str:
    """``3m12s``, ``1h05m``, ``45s``: short enough for a progress line or a log."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class _Pace:
    """The time left of a run of reports, at the pace since its first report (the first
    comes after the first text, so loading a model does not count). A new run (fewer done
    than before) starts a new pace."""

    def __init__(self) -> None:
        self.first: tuple[float, int] | None = None  # (time, done) of the run's first report
        self.last_done = 0

    def report(self, now: float, done: int) -> bool:
        """Count a report; whether it starts a new run."""
        new_run = self.first is None or done <= self.last_done
        if new_run:
            self.first = (now, done)
        self.last_done = done
        return new_run

    def left_s(self, now: float, done: int, total: int) -> float | None:
        """Seconds left at the pace so far (None before there is a pace, or when done)."""
        if self.first is None or done >= total or done <= self.first[1]:
            return None
        return (now - self.first[0]) / (done - self.first[1]) * (total - done)

    def end(self) -> None:
        self.first, self.last_done = None, 0


def text_progress_bar(
    out: TextIO | None = None, width: int = 30, clock: Callable[[], float] = time.monotonic
) -> ProgressCallback:
    """A progress callback drawing ``[#####.....] 12/97 ETA 3m12s text…`` on one line.

    The time left is reckoned by ``_Pace``; the last line has no ETA.
    """
    stream = out if out is not None else sys.stderr
    pace = _Pace()

    def report(done: int, total: int, text: str) -> None:
        now = clock()
        pace.report(now, done)
        left = pace.left_s(now, done, total)
        eta = f"ETA {format_duration(left)} " if left is not None else ""
        filled = width * done // max(total, 1)
        label = text.replace("\n", " ")[:20]
        bar = f"[{'#' * filled}{'.' * (width - filled)}]"
        stream.write(f"\r{bar} {done}/{total} {eta}{label}\x1b[K")
        if done == total:
            stream.write("\n")
            pace.end()
        stream.flush()

    return report


def text_progress_lines(
    out: TextIO | None = None,
    every_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> ProgressCallback:
    """A progress callback for a log or a pipe, where a one-line bar cannot be drawn:
    ``speech ready: 12/97 (12 %), about 3m12s left`` as a line of its own every
    ``every_s`` seconds, and a last line once it is done. Work that is over sooner (a warm
    cache) prints nothing; a long first rendering is never a silent wait.
    """
    stream = out if out is not None else sys.stderr
    pace = _Pace()
    since = 0.0  # the run's start, or its last line
    printed = False  # whether this run has printed a line

    def report(done: int, total: int, text: str) -> None:
        nonlocal since, printed
        now = clock()
        if pace.report(now, done):
            since, printed = now, False
        if now < since + every_s and (done < total or not printed):
            if done == total:
                pace.end()  # over before the first line was due
            return
        since, printed = now, True
        left = pace.left_s(now, done, total)
        more = f", about {format_duration(left)} left" if left is not None else ""
        stream.write(f"speech ready: {done}/{total} ({100 * done // max(total, 1)} %){more}\n")
        stream.flush()
        if done == total:
            pace.end()

    return report


def progress_reporter(stream: TextIO | None = None) -> ProgressCallback:
    """The one-line bar on a terminal, progress lines anywhere else (a log, a pipe)."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        return text_progress_bar(stream)
    return text_progress_lines(stream)
