"""The embedded recogniser: Whisper (CTranslate2, via faster-whisper), tuned for short turns.

``WhisperModel.transcribe`` pads every input to Whisper's 30-second window; on two CPU
cores the encoder alone then costs ~0.5–0.8 s even for a 3-second question. CTranslate2's
encoder accepts a shorter mel window, so the audio is padded only to the utterance plus a
little silence (measured: encode 0.05 s instead of 0.65 s, same text). Decoding uses a
beam (three; two when recognitions are queueing, see ``busy_beam_size``), temperature 0,
no timestamps, no conditioning on earlier text, and a token cap proportional to the audio
length, so that a decoding loop cannot run away. The embedded model is used with its output
vocabulary restricted to Japanese (``vocabulary.py``), which makes each decoding step
cheaper; a restricted model directory maps its rows back to the tokenizer's ids.

A vocabulary hint (``initial_prompt``) pulls the recognition towards the FAQ's words, and
each hint pulls it its own way: 「ご自身の税額の内訳」 in the titles leaks into 固定資産税 as
ご自身税. While the recogniser is free, the same encoder output is therefore decoded again
with each of ``extra_prompts`` (a shorter hint without staff topics, and none), with the
small beam, and their hypotheses join the n-best; the understanding takes the one the FAQ
explains best. By default (``extras_on_demand``) those decodings wait until the
understanding finds the main one does not settle the turn (``HintFreeRatings.hear_more``):
half the dev clips are answered on it, and a lone call's recognition costs a fifth less.
Made at once instead, they run on a second model replica beside the main one, on the core the
call loop leaves idle.

What each decoding costs, in process CPU per validation clip (5.6 s of audio on average,
2-core AMD EPYC shared with other work, ``bench/asr_cost.py``): the encoder 124 ms; the
160-character titles hint 444 ms at beam 5, 345 at beam 3; the 80-character category hint
323 at beam 5, 240 at beam 2; no hint 231 at beam 5, 192 at beam 2. Most of a decoding is
its steps, each reading the decoder's weights whatever the beam, and a hint's tokens.
Beam 3 with the titles hint, and the two extra hints at beam 2 beside it, decided as well
as beam 5 with all three at beam 5 on the validation and dev audio (see
``tests/data/eval/CONSTANTS.md``) for 80 % of their CPU; dropping the category hint too
saved 20 % more but lost 5 of 188 dev clips.

The encoder's convolutions run on oneDNN, which builds a primitive (JIT code and buffers)
for every input shape and keeps it in a process-wide cache of 1024 by default. A window
that just covers each utterance has a new shape almost every time, so that cache grows
with the calls taken: 0.75 MiB per window length (150 lengths: +113 MiB RSS; in a
10-minute soak the JIT code alone went from 6 to 21 MiB). ``bound_encoder_shapes`` caps
it (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``) before the model is loaded; rebuilding a shape
no longer cached did not show beside the encoding (137 against 135 ms for a 5-s window,
2-core AMD EPYC under other load).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from voicebot.asr.base import RecognizerError, Transcript
from voicebot.asr.decode_hold import DecodeHold
from voicebot.asr.hint_echo import echoes_hint
from voicebot.asr.stock_phrases import is_stock_phrase
from voicebot.asr.vocabulary import OutputVocabulary

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 100  # Whisper's mel hop is 10 ms
MAX_WINDOW_FRAMES = 3000  # the model's 30-second window
OVERLAP_MEMORY = 10  # recognitions that keep the small beam after one overlapped another
DECODE_MEMORY = 9  # main decodings whose median is the estimate of the next one's time
DECODE_MEMORY_MIN = 3  # fewer than this: no estimate yet
TOKENS_PER_SECOND_CAP = 10  # Japanese speech is ~5-8 tokens/s; anything beyond is a loop
# oneDNN primitives kept for encoder shapes (two convolutions per window length): at 16,
# 150 distinct lengths left RSS where it started, against +113 MiB at oneDNN's 1024.
ENCODER_SHAPES_CACHED = 16
ONEDNN_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"

# One hypothesis: its text, its mean token probability in its own decoding, its token ids.
Hypothesis = tuple[str, float | None, tuple[int, ...]]


class RecognitionCancelled(Exception):
    """The recognition was no longer wanted and stopped before it finished."""


def _check(cancelled: threading.Event) -> None:
    if cancelled.is_set():
        raise RecognitionCancelled


def bound_encoder_shapes(capacity: int = ENCODER_SHAPES_CACHED) -> int:
    """Cap oneDNN's primitive cache, which otherwise keeps a compiled convolution for every
    encoder window length ever seen (see the module docstring); returns the cap in force.

    oneDNN reads the variable once, when it first builds a primitive in this process: call
    this before any model runs. An operator's own setting is left as it is.
    """
    return int(os.environ.setdefault(ONEDNN_CACHE_VARIABLE, str(capacity)))


def bound_blas_threads(threads: int) -> None:
    """Let numpy's BLAS use ``threads`` threads, as CTranslate2 does per recognition.

    The front end's mel spectrogram is a matrix product, the process's one sizeable BLAS
    call. OpenBLAS runs it on every core and its workers then spin, waiting for more:
    with a call of twelve questions alone on a 2-core Xeon they burnt a quarter of the
    process's CPU (1.85 of 7.3 s) for no gain in time, since recognitions already run
    in parallel on their own threads. The limit is the process's: the last recogniser
    loaded sets it (one per process in service).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


class WhisperRecognizer:
    """Whole-utterance recognition with a window that just covers the utterance.

    One instance serves all calls of a process: the model is loaded once and inference
    runs on a small thread pool (``workers``) so that the event loop never blocks.
    One CTranslate2 thread per recognition is the default: on the 2-core reference machine
    a second thread gave the same text more slowly (157 vs 187 ms per dev clip) and, with
    the call loop waking every 20 ms beside it, doubled live recognition time.
    """

    name = "whisper"
    sample_rate = SAMPLE_RATE
    holds_decoding = True  # ``transcribe`` takes a speculation's ``DecodeHold``

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        language: str = "ja",
        compute_type: str = "int8",
        cpu_threads: int = 1,
        workers: int = 1,
        beam_size: int = 3,
        busy_beam_size: int = 2,
        pad_seconds: float = 1.5,
        initial_prompt: str | None = None,
        extra_prompts: Sequence[str | None] = (),
        n_best: int = 2,
        vocabulary: str = "japanese",
        extras_on_demand: bool = True,
    ):
        self.model_dir = model_dir
        self.language = language
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.workers = workers
        self.beam_size = beam_size
        self.busy_beam_size = min(busy_beam_size, beam_size)
        self.pad_seconds = pad_seconds
        self.initial_prompt = initial_prompt
        self.extra_prompts = tuple(extra_prompts)  # decoded too while the recogniser is free
        # only when the understanding asks for them (``HintFreeRatings.hear_more``)
        self.extras_on_demand = extras_on_demand
        self.n_best = max(1, n_best)
        if vocabulary not in ("japanese", "full"):
            raise ValueError(f"vocabulary must be 'japanese' or 'full', not {vocabulary!r}")
        self.vocabulary = vocabulary  # for the embedded model; a model_dir is used as it is
        self._lock = threading.Lock()
        self._in_flight = 0  # recognitions submitted and not yet finished (or dropped)
        self._overlaps: deque[bool] = deque(maxlen=OVERLAP_MEMORY)  # asked while another ran
        self._count_lock = threading.Lock()
        # how long the latest main decodings took, seconds (``decode_ms_estimate``)
        self._decode_s: deque[float] = deque(maxlen=DECODE_MEMORY)
        self._model = None
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="whisper")
        self._extra_executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="whisper-extra"
        )

    # -- loading -------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model now (otherwise on first use). Prepares the embedded model if needed."""
        with self._lock:
            if self._model is not None:
                return
            bound_encoder_shapes()
            try:
                bound_blas_threads(self.cpu_threads)
                from faster_whisper import WhisperModel
                from faster_whisper.tokenizer import Tokenizer
                from faster_whisper.transcribe import get_suppressed_tokens

                model_dir = self.model_dir
                if model_dir is None:
                    from voicebot.model_assets import ensure_whisper_base, ensure_whisper_base_ja

                    model_dir = (
                        ensure_whisper_base_ja()
                        if self.vocabulary == "japanese"
                        else ensure_whisper_base()
                    )
                started = time.perf_counter()
                model = WhisperModel(
                    str(model_dir),
                    device="cpu",
                    compute_type=self.compute_type,
                    cpu_threads=self.cpu_threads,
                    # a replica per worker, and one per worker for the extra decodings
                    num_workers=self.workers * (2 if self.extra_prompts else 1),
                )
            except Exception as exc:
                raise RecognizerError(
                    f"cannot load Whisper model from {self.model_dir}: {exc}"
                ) from exc
            tokenizer = Tokenizer(
                model.hf_tokenizer,
                model.model.is_multilingual,
                task="transcribe",
                language=self.language,
            )
            self._token_map = OutputVocabulary.of_model(Path(model_dir))
            self._prompt_ids: dict[str | None, list[int]] = {}
            self._suppress = self._token_map.to_model(
                get_suppressed_tokens(tokenizer, [-1]), drop_missing=True
            )
            self._tokenizer = tokenizer
            self._model = model
            log.info(
                "whisper model loaded from %s in %.2fs", model_dir, time.perf_counter() - started
            )

    def prompt_tokens(self, prompt: str | None) -> list[int]:
        """The decoder's start: the hint (if any), then 〈ja, transcribe, no timestamps〉.

        Made from the prompt text on first use, so that a hint changed after loading (a
        newly published FAQ) takes effect.
        """
        ids = self._prompt_ids.get(prompt)
        if ids is None:
            tokenizer = self._tokenizer
            tokens: list[int] = []
            if prompt:
                tokens = [tokenizer.sot_prev, *tokenizer.encode(" " + prompt.strip())]
            tokens = [*tokens, *tokenizer.sot_sequence, tokenizer.no_timestamps]
            ids = self._prompt_ids[prompt] = self._token_map.to_model(tokens, drop_missing=True)
        return ids

    # -- recognition ---------------------------------------------------------------------
    def window_frames(self, n_samples: int) -> int:
        """Mel frames to encode: the audio plus ``pad_seconds``, even, within the model's window."""
        seconds = n_samples / SAMPLE_RATE + self.pad_seconds
        frames = 2 * math.ceil(seconds * FRAMES_PER_SECOND / 2)
        return max(2, min(MAX_WINDOW_FRAMES, frames))

    def current_beam_size(self) -> int:
        """The beam for a recognition starting now: the small one while the recogniser is shared.

        A wider beam hears more (beam 5 against 2: dev calls 167 against 164 of 188) but
        costs more (with the titles hint, 444 ms CPU per validation clip at beam 5, 345 at
        beam 3). With several calls at once, recognitions queue, and each one's
        wait is the searches ahead of it: measured with 8 calls, p50 564 ms when only a
        queue at hand switched beams. So the small beam is used for ``OVERLAP_MEMORY``
        recognitions after any that was asked for while another was in flight (which
        includes every one now waiting). A single call keeps the wide beam: a speculative
        recognition it talked over stops counting when it is dropped.
        """
        return self.busy_beam_size if self.is_shared() else self.beam_size

    @property
    def decode_ms_estimate(self) -> float | None:
        """How long a main decoding takes on this machine now: the median of the latest
        ones, in milliseconds (None before the first few). A speculation's hold is released
        early enough for its decoding to be done when the turn ends (``RecognitionSchedule``)."""
        with self._count_lock:
            if len(self._decode_s) < DECODE_MEMORY_MIN:
                return None
            return 1000.0 * statistics.median(self._decode_s)

    def is_shared(self) -> bool:
        """Whether a recognition overlapped another recently (see ``current_beam_size``)."""
        with self._count_lock:
            return any(self._overlaps)

    def transcribe_sync(
        self,
        samples: np.ndarray,
        cancelled: threading.Event | None = None,
        hold: DecodeHold | None = None,
    ) -> Transcript:
        """Recognise int16 mono 16 kHz samples (blocking).

        ``cancelled`` set (the caller went on after a speculative start) stops the work at
        the next step with ``RecognitionCancelled``: a decoding cannot be interrupted, but
        those not begun are skipped; a speculation's ``hold`` delays them past the encoder."""
        if self._model is None:
            self.load()
        stop = cancelled or threading.Event()
        beam_size = self.current_beam_size()
        # Extra hints only while the recogniser is free: under load they would queue.
        extras = () if self.is_shared() else self.extra_prompts
        # They offer other readings, not a wider search: the small beam is enough.
        extra_beam = min(beam_size, self.busy_beam_size)
        # On demand, they wait until the understanding finds the main decoding unsettled.
        on_demand = bool(extras) and self.extras_on_demand
        at_once = () if on_demand else extras
        started = time.perf_counter()
        audio = self._audio(samples)
        max_new = int(len(audio) / SAMPLE_RATE * TOKENS_PER_SECOND_CAP) + 8
        try:
            encoded = self._encode(audio)
            _check(stop)
            if hold is not None and not self.is_shared():  # others waiting: no idle worker
                hold.wait()
                _check(stop)
            heard, plain = self._decode_all(encoded, at_once, beam_size, extra_beam, max_new, stop)
            unprompted = HintFreeRatings(
                {text: ids for text, _, ids in heard if text and ids},
                lambda chosen: self._unprompted(encoded, chosen, len(audio)),
                # decoding again with a topic hint only while the recogniser is free
                (lambda hint: self._decode(encoded, hint, extra_beam, max_new)) if extras else None,
                plain=plain,
                more=(
                    (lambda: self._decode_extras(encoded, extras, extra_beam, max_new))
                    if on_demand
                    else None
                ),
                audio_ms=1000.0 * len(audio) / SAMPLE_RATE,
            )
        except RecognitionCancelled:
            raise
        except Exception as exc:
            raise RecognizerError(f"whisper inference failed: {exc}") from exc
        text, confidence, _ = heard[0] if heard else ("", None, ())
        return Transcript(
            text=text,
            alternatives=tuple(dict.fromkeys(t for t, _, _ in heard[1:] if t and t != text)),
            audio_ms=1000.0 * len(audio) / SAMPLE_RATE,
            processing_ms=1000.0 * (time.perf_counter() - started),
            language=self.language,
            confidence=confidence,
            unprompted=unprompted,
        )

    def _decode_all(
        self,
        encoded: object,
        extras: Sequence[str | None],
        beam_size: int,
        extra_beam: int,
        max_new: int,
        stop: threading.Event,
    ) -> tuple[list[Hypothesis], str | None]:
        """The hypotheses of the main decoding and the extra ones that report the audio,
        main first, and the plain reading: the first of the first decoding made with no
        hint (None when every decoding had one)."""
        # The extra decodings run beside the main one, on the model's spare replica.
        extra = (
            self._extra_executor.submit(
                self._decode_each, encoded, extras, extra_beam, max_new, stop
            )
            if extras
            else None
        )
        began = time.perf_counter()
        main = self._decode(encoded, self.initial_prompt, beam_size, max_new)
        with self._count_lock:
            self._decode_s.append(time.perf_counter() - began)
        more = extra.result() if extra else []
        _check(stop)
        return self._reported([(self.initial_prompt, main), *zip(extras, more, strict=True)])

    def _decode_extras(
        self, encoded: object, extras: Sequence[str | None], beam_size: int, max_new: int
    ) -> tuple[list[Hypothesis], str | None]:
        """The extra decodings asked for after the main one (blocking): their hypotheses
        that report the audio and the plain reading, as ``_decode_all`` gives them.

        The first extras run on the spare replicas while the last runs here, beside them.
        None are made when recognitions have begun to overlap since (other calls): under
        load they would queue ahead of other callers' turns.
        """
        if self.is_shared():
            return [], None
        first = [
            self._extra_executor.submit(self._decode, encoded, p, beam_size, max_new)
            for p in extras[:-1]
        ]
        last = self._decode(encoded, extras[-1], beam_size, max_new)
        found = [f.result() for f in first] + [last]
        return self._reported(list(zip(extras, found, strict=True)))

    def _reported(
        self, decodings: list[tuple[str | None, list[Hypothesis]]]
    ) -> tuple[list[Hypothesis], str | None]:
        """Decodings' hypotheses that report the audio, in order, and the plain reading:
        the first of the first decoding made with no hint (None when every one had one)."""
        kept = [(prompt, self._not_echoes(found, prompt)) for prompt, found in decodings]
        heard = [h for _, readings in kept for h in readings]
        plain = next((r[0][0] for prompt, r in kept if not prompt and r and r[0][0]), None)
        return heard, plain

    def rate_without_hint(self, samples: np.ndarray, texts: Sequence[str]) -> dict[str, float]:
        """How probable the audio (int16 mono 16 kHz) makes each text with no hint before
        it: its mean token probability, forced on the encoder output (blocking)."""
        if self._model is None:
            self.load()
        audio = self._audio(samples)
        tokenizer = self._tokenizer
        heard = [
            (t, None, tuple(self._token_map.to_model(tokenizer.encode(t), drop_missing=True)))
            for t in texts
        ]
        return self._unprompted(self._encode(audio), heard, len(audio))

    @staticmethod
    def _audio(samples: np.ndarray) -> np.ndarray:
        audio = np.asarray(samples, dtype=np.float32) / 32768.0
        return audio[: MAX_WINDOW_FRAMES * SAMPLE_RATE // FRAMES_PER_SECOND]

    def _encode(self, audio: np.ndarray) -> object:
        """The encoder output for ``audio`` in a window that just covers it."""
        import ctranslate2

        frames = self.window_frames(len(audio))
        padded = np.zeros(frames * (SAMPLE_RATE // FRAMES_PER_SECOND), dtype=np.float32)
        padded[: len(audio)] = audio[: len(padded)]
        features = self._model.feature_extractor(padded)[:, :frames]  # type: ignore[union-attr]
        return self._model.model.encode(  # type: ignore[union-attr]
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None]))
        )

    def _unprompted(
        self, encoded: object, heard: Sequence[Hypothesis], n_samples: int
    ) -> dict[str, float]:
        """Each distinct hypothesis' mean token probability with no hint before it, forced
        on the same encoder output (one batched teacher-forced pass, no search).

        A hint makes its own words likely: on unclear audio the hinted decoding writes
        「固定資産税の通知書」 and rates it 0.7, while the same text without the hint gets
        0.05. The probability without the hint is the audio's own evidence for the words.
        """
        import ctranslate2

        texts: dict[str, list[int]] = {}
        for text, _, ids in heard:
            if text and ids and text not in texts:
                texts[text] = list(ids)
        if not texts:
            return {}
        frames = np.asarray(encoded)
        batch = ctranslate2.StorageView.from_array(
            np.ascontiguousarray(np.repeat(frames, len(texts), axis=0))
        )
        results = self._model.model.align(  # type: ignore[union-attr]
            batch,
            self.prompt_tokens(None),
            list(texts.values()),
            [max(2, n_samples * FRAMES_PER_SECOND // SAMPLE_RATE)] * len(texts),
        )
        out = {}
        for text, result in zip(texts, results, strict=True):
            probs = np.maximum(np.asarray(result.text_token_probs, dtype=np.float64), 1e-9)
            out[text] = float(np.exp(np.mean(np.log(probs)))) if len(probs) else 0.0
        return out

    def _decode(
        self, encoded: object, prompt: str | None, beam_size: int, max_new: int
    ) -> list[Hypothesis]:
        """The n-best hypotheses of one decoding of ``encoded`` after ``prompt``: each text
        with its mean token probability (the exponent of CTranslate2's length-normalised
        log-probability) and its token ids."""
        ids = self.prompt_tokens(prompt)
        result = self._model.model.generate(  # type: ignore[union-attr]
            encoded,
            [ids],
            beam_size=beam_size,
            max_length=len(ids) + max_new,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            return_scores=True,
            num_hypotheses=min(self.n_best, beam_size),
        )[0]
        scores = [math.exp(s) for s in result.scores] if result.scores else []
        seqs = [tuple(seq) for seq in result.sequences_ids]
        texts = [self._text(seq) for seq in seqs]
        probs = scores + [None] * (len(texts) - len(scores))
        return list(zip(texts, probs, seqs, strict=True))

    def _decode_each(
        self,
        encoded: object,
        prompts: Sequence[str | None],
        beam_size: int,
        max_new: int,
        stop: threading.Event,
    ) -> list[list[Hypothesis]]:
        """``_decode`` with each prompt in turn, until ``stop`` is set."""
        return [self._decode(encoded, p, beam_size, max_new) for p in prompts if not stop.is_set()]

    @staticmethod
    def _not_echoes(hypotheses: list[Hypothesis], prompt: str | None) -> list[Hypothesis]:
        """The hypotheses that report the audio: one that repeats its decoding's hint is the
        hint speaking (see ``hint_echo``), and one made of subtitle stock phrases is the
        training data speaking (see ``stock_phrases``); both count as unheard."""
        kept = [
            h
            for h in hypotheses
            if not echoes_hint(h[0], prompt, h[1]) and not is_stock_phrase(h[0])
        ]
        if len(kept) < len(hypotheses):
            log.debug("dropped %d hypotheses that repeat the hint", len(hypotheses) - len(kept))
        return kept

    def _text(self, ids: list[int]) -> str:
        """A hypothesis' tokens as clean text."""
        text = self._tokenizer.decode(self._token_map.to_original(ids)).strip()
        return drop_repetition(_drop_replacement_chars(text))

    async def transcribe(self, samples: np.ndarray, hold: DecodeHold | None = None) -> Transcript:
        """Recognise without blocking the event loop; ``hold``: see ``transcribe_sync``.

        A dropped recognition stops counting as in flight when it is dropped, not when its
        thread gets to the next step: a lone caller's stale speculation, still in its last
        decoding when the whole turn is asked for, would otherwise mark the recogniser
        shared and cost the next ``OVERLAP_MEMORY`` recognitions the wide beam and the
        extra hints.
        """
        with self._count_lock:
            self._overlaps.append(self._in_flight > 0)
            self._in_flight += 1
        cancelled = threading.Event()
        counted = [True]  # until finished or dropped, whichever comes first
        future = self._executor.submit(self.transcribe_sync, samples, cancelled, hold)
        future.add_done_callback(lambda _: self._uncount(counted))  # also if never started
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            cancelled.set()  # a running recognition skips the decodings it has not begun
            if hold is not None:
                hold.release()  # a held one wakes to find itself cancelled
            self._uncount(counted)
            raise

    def _uncount(self, counted: list[bool]) -> None:
        with self._count_lock:
            if counted[0]:
                counted[0] = False
                self._in_flight -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._extra_executor.shutdown(wait=False, cancel_futures=True)


class HintFreeRatings(Mapping[str, float]):
    """Each hypothesis' probability without the vocabulary hint, rated when first asked for.

    An answer looks up one text, the hypothesis it chose (and, when that one is rated
    low, ``plain``, the first reading of the decoding with no hint); a turn that would
    not be answered (a confirmation, a choice, asking again) has every hypothesis rated,
    in one batched pass (``rate_all``), to judge it again on the ones the audio supports; a
    request about the call looks up none. Rating every hypothesis right after decoding
    cost a forced pass per distinct text (4-6 of them while the recogniser is free) on
    every turn; rated on demand, most turns pay for one short pass, or none. The pass
    runs in the thread that asks (the worker thread that prepares the turn's
    understanding, beside the matcher's work on the same hypotheses); the encoder output
    is kept until then.
    """

    def __init__(
        self,
        hypotheses: Mapping[str, Sequence[int]],
        rate: Callable[[list[Hypothesis]], dict[str, float]],
        decode: Callable[[str], list[Hypothesis]] | None = None,
        plain: str | None = None,
        more: Callable[[], tuple[list[Hypothesis], str | None]] | None = None,
        audio_ms: float | None = None,
    ):
        self._ids = {text: tuple(ids) for text, ids in hypotheses.items()}
        # the first reading of the decoding with no hint, when one was made: what the
        # audio says with nothing put in its mouth
        self.plain = plain if plain in self._ids else None
        self._rate = rate
        self._decode = decode
        self._more = more
        self.audio_ms = audio_ms  # the audio these hypotheses report
        self._rated: dict[str, float] = {}
        self._heard_again: dict[str, tuple[str, ...]] = {}
        self._heard_more: tuple[str, ...] | None = None
        self._lock = threading.Lock()

    def __contains__(self, text: object) -> bool:
        return text in self._ids  # without rating it

    def __getitem__(self, text: str) -> float:
        if text not in self._ids:
            raise KeyError(text)
        with self._lock:
            if text not in self._rated:
                try:
                    self._rated.update(self._rate([(text, None, self._ids[text])]))
                except Exception:
                    # Unrated counts as unheard: the answer is confirmed, the call goes on.
                    log.exception("rating a hypothesis without the hint failed")
                    self._rated[text] = 0.0
            return self._rated[text]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def rate_all(self, texts: Iterable[str] | None = None) -> dict[str, float]:
        """Every hypothesis rated (or those of ``texts`` that are hypotheses), the ones not
        yet rated in one batched pass. Asked for the same texts again, nothing is rated:
        the understanding repeated on the call loop must find its work done."""
        with self._lock:
            wanted = self._ids if texts is None else [t for t in texts if t in self._ids]
            missing = [(t, None, self._ids[t]) for t in wanted if t not in self._rated]
            if missing:
                try:
                    self._rated.update(self._rate(missing))
                except Exception:
                    log.exception("rating the hypotheses without the hint failed")
                    self._rated.update((t, 0.0) for t, _, _ in missing)
            return {text: self._rated[text] for text in wanted}

    @property
    def rated(self) -> int:
        """How many hypotheses have been rated so far."""
        return len(self._rated)

    @property
    def can_hear_more(self) -> bool:
        """Whether the extra decodings wait to be asked for (``hear_more``)."""
        return self._more is not None

    @property
    def heard_more(self) -> bool:
        """Whether ``hear_more`` has been asked (its hypotheses are among these)."""
        return self._heard_more is not None

    def hear_more(self) -> tuple[str, ...]:
        """The extra decodings' hypotheses, best first (blocking; made once, on first ask).

        While the recogniser is free, the same audio is decoded with other hints too, and
        what they write checks what the titles hint wrote (a fluent title on unclear
        audio) and adds readings it crowded out. Many turns are settled by the main
        decoding alone (on dev audio half the clips, on validation audio a third);
        decoding the others only for the rest saves a fifth of a lone call's recognition
        CPU on dev audio. Their hypotheses join these ratings, the plain reading among
        them; on failure there are none.
        """
        with self._lock:
            if self._heard_more is None:
                heard: list[Hypothesis] = []
                plain = None
                if self._more is not None:
                    try:
                        heard, plain = self._more()
                    except Exception:
                        log.exception("the extra decodings failed")
                self._heard_more = self._join(heard)
                if self.plain is None and plain in self._ids:
                    self.plain = plain
            return self._heard_more

    def listen_again(self, hint: str) -> tuple[str, ...]:
        """The same audio decoded again after ``hint`` (blocking): its new hypotheses, best
        first, which join these ratings. Once per hint: asked again, the same texts.

        A hint of the few topics the turn is near (their titles) lets Whisper write words
        the long all-topics hint crowds out (相続人, 退職, 障害); what it writes is rated
        without the hint like every other hypothesis, so a hint that only speaks for
        itself is judged as such. A hypothesis that repeats the hint is dropped. Under
        load (no decoder given) and on failure there are no new hypotheses.
        """
        with self._lock:
            if hint in self._heard_again:
                return self._heard_again[hint]
            found: tuple[str, ...] = ()
            if self._decode is not None:
                try:
                    # Every title of this hint was in the first one too, which did not
                    # hear a topic's name clearly: a reading that is one of them and
                    # nothing else is the hint's, however surely it was decoded.
                    heard = [h for h in self._decode(hint) if not echoes_hint(h[0], hint, 0.0)]
                except Exception:
                    log.exception("decoding again with a topic hint failed")
                    heard = []
                found = self._join(heard)
            self._heard_again[hint] = found
            return found

    def _join(self, heard: list[Hypothesis]) -> tuple[str, ...]:
        """New hypotheses join these ratings (unrated); their distinct texts, in order."""
        for text, _, ids in heard:
            if text and ids and text not in self._ids:
                self._ids[text] = tuple(ids)
        return tuple(dict.fromkeys(t for t, _, _ in heard if t))


def faq_vocabulary_prompt(faq: object, max_chars: int = 160) -> str:
    """A recognition hint made of the FAQ's topic titles (the words callers use most)."""
    titles = [e.title for e in faq]  # type: ignore[attr-defined]
    words: list[str] = []
    for title in titles:
        if sum(len(w) + 1 for w in words) + len(title) > max_chars:
            break
        words.append(title)
    return "、".join(words) + "。"


def faq_category_prompt(faq: object, max_chars: int = 80) -> str:
    """A second, shorter hint: topic titles taken from each category in turn, so that
    every tax is named early, without the staff-only topics (their wording, 「ご自身の」,
    leaks into transcripts). Shorter is cheaper to decode: 80 characters took half the
    time of the 160 of ``faq_vocabulary_prompt``."""
    by_category: dict[str, list[str]] = {}
    for entry in faq:  # type: ignore[attr-defined]
        if entry.action.value != "transfer":
            by_category.setdefault(entry.id.split(".")[0], []).append(entry.title)
    words: list[str] = []
    for rank in range(max(map(len, by_category.values()), default=0)):
        for titles in by_category.values():
            if rank < len(titles):
                if sum(len(w) + 1 for w in words) + len(titles[rank]) > max_chars:
                    return "、".join(words) + "。"
                words.append(titles[rank])
    return "、".join(words) + "。"


def _drop_replacement_chars(text: str) -> str:
    """A token cap can cut a multi-byte character in half; drop the broken tail."""
    return text.replace("\ufffd", "")


_SENTENCE = re.compile(r"[^。！？!?]+[。！？!?]?")


_LOOP = re.compile(r"(.{1,3}?)\1{3,}")  # one to three characters, four times or more


def drop_repetition(text: str) -> str:
    """Whisper sometimes starts the utterance again after the end (「確定申告について
    聞きたいんですが、確定申告について」), says a sentence twice, or loops on a syllable
    until the token cap (「納税額剣剣剣剣剣…」); keep it once."""
    text = _LOOP.sub(r"\1", text)
    text = _drop_restart(text)
    sentences = [m.group(0) for m in _SENTENCE.finditer(text) if m.group(0).strip()]
    kept: list[str] = []
    for sentence in sentences:
        core = sentence.strip().rstrip("。！？!?")
        if kept and core == kept[-1].strip().rstrip("。！？!?"):
            continue
        kept.append(sentence)
    return "".join(kept) if kept else text


_SEPARATORS = " 、。,.!?！？"
MIN_RESTART_CHARS = 2


def _drop_restart(text: str) -> str:
    """Cut a tail that repeats the beginning of the text (at any length, repeatedly).

    Commas and spaces are ignored when comparing: Whisper punctuates the repeat differently.
    """
    compact = "".join(ch for ch in text if ch not in " 、,")
    cut = False
    while True:
        body = compact.rstrip(_SEPARATORS)
        for k in range(len(body) // 2, MIN_RESTART_CHARS - 1, -1):
            if body[-k:] == body[:k]:
                compact = body[:-k]
                cut = True
                break
        else:
            return compact if cut else text
