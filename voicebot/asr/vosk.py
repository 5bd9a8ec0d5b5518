"""The streaming recogniser: Vosk (Kaldi), which gives partial text while the caller speaks.

Partial results let the call loop react before the caller has finished (barge-in, early FAQ
lookup); the final text of an utterance comes from the same decoder, so nothing is
recognised twice.

Threading: the Kaldi model (~500 MB in memory) is loaded once, lazily and under a lock, and
is shared by every call; Vosk allows one model to serve many decoders at once. Each stream
has a ``KaldiRecognizer`` (decoder) to itself, which is not thread-safe, so a stream feeds
its audio in order, one chunk at a time, on the recogniser's small thread pool. cffi
releases the GIL in Vosk's C calls, so calls can decode in parallel where there are cores.

Warm decoders: with Vosk's small models (lookahead graphs, ``HCLr.fst`` + ``Gr.fst``) each
decoder composes the graph on demand and caches it, so a new decoder is slow until its cache
fills. Measured on the Korean small model (2 cores): a 4.7 s utterance took 2.0 s on a new
decoder, the first partial result alone ~0.5 s, but 0.26 s on a decoder that had decoded one
utterance before, with the same text. So a finished stream resets its decoder and hands it
back to a pool for the next stream (``max_idle_decoders``, ~90 MB each once warm). A reset
decoder keeps nothing of the previous utterance except that cache.

Sample rate: the recogniser takes audio at the rate the model was trained on (16 kHz for
Vosk's Japanese and Korean models; read from ``conf/mfcc.conf``) and refuses any other rate
when it loads, rather than let Kaldi upsample quietly: the pipeline resamples phone audio
with ``voicebot.resample.StreamResampler``, in one visible place. 8 kHz phone audio has
nothing above 4 kHz, which wideband models miss: on the Korean model a word heard right at
16 kHz was lost when the same speech went through 8 kHz.

Results are not exactly reproducible: Kaldi dithers the features with random noise unless
the model's ``mfcc.conf`` sets ``--dither=0`` (the Korean model keeps the default, 1.0), and
on borderline audio that can change a word from one run to the next.

Vosk ends a segment by itself after ~0.5 s of trailing silence (``endpoint.rule2`` in the
model's ``conf/model.conf``) and starts decoding afresh. A stream keeps the text of finished
segments, so one utterance (as the call loop's endpointer sees it) gives one transcript.
Where a segment ends depends on how the audio is chunked, which is why the batch
``transcribe`` feeds 20 ms chunks like the live pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from voicebot.asr.base import RecognizerError, Transcript
from voicebot.frames import as_pcm16
from voicebot.model_download import model_path

if TYPE_CHECKING:
    import vosk

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_SAMPLE_RATE = 16000  # Kaldi's default when a model's mfcc.conf names no rate
BATCH_CHUNK_MS = 20  # the pipeline's transport frame
DEFAULT_MODEL = "vosk-ja-small"
_DOWNLOAD_HINT = f"install one with `voicebot models download {DEFAULT_MODEL}`"
_RATE_OPTION = re.compile(r"^\s*--sample-frequency\s*=\s*(\d+(?:\.\d+)?)\s*$", re.MULTILINE)


class VoskRecognizer:
    """Streaming and batch recognition with a Vosk model directory.

    One instance serves all calls of a process. ``join_words`` removes the spaces Vosk puts
    between words: right for Japanese (its models emit space-separated words), wrong for
    languages written with spaces. ``workers`` threads decode (one chunk of one stream
    each at a time); up to ``max_idle_decoders`` warm decoders are kept between utterances.
    """

    name = "vosk"

    def __init__(
        self,
        model_dir: Path,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        *,
        language: str = "ja",
        join_words: bool = True,
        workers: int = 2,
        max_idle_decoders: int = 4,
    ) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if max_idle_decoders < 0:
            raise ValueError(f"max_idle_decoders must be >= 0, got {max_idle_decoders}")
        self.model_dir = Path(model_dir)
        self.sample_rate = sample_rate
        self.language = language
        self.join_words = join_words
        self.max_idle_decoders = max_idle_decoders
        self._lock = threading.Lock()  # guards the model and the pool
        self._model: vosk.Model | None = None
        self._idle: list[vosk.KaldiRecognizer] = []  # reset, warm decoders
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vosk")

    # -- loading -------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model now (blocking; otherwise it loads on first use, in a worker thread).

        Raises `RecognizerError` if the directory is missing, is not a Vosk model, cannot be
        read, or was trained for a different sample rate than this recogniser's.
        """
        self._loaded_model()

    def _loaded_model(self) -> vosk.Model:
        with self._lock:
            if self._model is None:
                self._model = _load_model(self.model_dir, self.sample_rate)
            return self._model

    # -- decoders (called in worker threads) ----------------------------------------------
    def _take_decoder(self) -> vosk.KaldiRecognizer:
        """The most recently used idle decoder (the warmest), or a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        import vosk

        model = self._loaded_model()
        try:
            kaldi = vosk.KaldiRecognizer(model, float(self.sample_rate))
            kaldi.SetWords(True)  # per-word confidences in Result(), for Transcript.confidence
        except Exception as exc:
            raise RecognizerError(f"cannot create a Vosk decoder: {exc}") from exc
        return kaldi

    def _give_back_decoder(self, kaldi: vosk.KaldiRecognizer) -> None:
        """Reset a decoder whose utterance is finished and keep it for the next stream."""
        try:
            kaldi.Reset()
        except Exception:  # a decoder that cannot reset is simply dropped
            log.warning("dropping a Vosk decoder that failed to reset", exc_info=True)
            return
        with self._lock:
            if len(self._idle) < self.max_idle_decoders:
                self._idle.append(kaldi)

    # -- recognition ---------------------------------------------------------------------
    def stream(self) -> VoskStream:
        """Start an utterance. Cheap: it takes a decoder on its first `accept`."""
        return VoskStream(self)

    def transcribe_sync(self, samples: np.ndarray) -> Transcript:
        """Recognise a whole utterance (blocking), chunked like the live pipeline."""
        pcm = as_pcm16(samples)
        stream = self.stream()
        step = self.sample_rate * BATCH_CHUNK_MS // 1000
        for start in range(0, len(pcm), step):
            stream._feed(pcm[start : start + step])
        return stream._finish()

    async def transcribe(self, samples: np.ndarray) -> Transcript:
        """Recognise a whole utterance without blocking the event loop."""
        return await self._run(self.transcribe_sync, samples)

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, function, *args)
        except RuntimeError as exc:  # the executor was shut down
            raise RecognizerError(f"the Vosk recogniser is closed: {exc}") from exc
        return await future

    def close(self) -> None:
        """Stop the worker threads and drop idle decoders; open streams fail afterwards."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._idle.clear()


class VoskStream:
    """One utterance fed chunk by chunk; create it with `VoskRecognizer.stream()`.

    Calls are served in the order they are made (an asyncio lock is first come, first
    served), so a caller may even fire `accept` calls without awaiting each one.
    """

    def __init__(self, recognizer: VoskRecognizer) -> None:
        self._recognizer = recognizer
        self._order = asyncio.Lock()
        self._finished = False  # no more calls accepted
        # Guards the decoder itself: a cancelled `accept` leaves its chunk running in a
        # worker thread while the asyncio lock is already free for the next call.
        self._decoder_lock = threading.Lock()
        self._kaldi: vosk.KaldiRecognizer | None = None
        self._closed = False  # the decoder has given its final result, or failed
        self._final_words: list[str] = []  # words of the segments Vosk has closed
        self._confidences: list[float] = []
        self._text = ""  # last text reported
        self._samples = 0
        self._processing_s = 0.0

    async def accept(self, samples: np.ndarray) -> str | None:
        """Feed int16 samples; returns the utterance's text so far when it changed."""
        pcm = as_pcm16(samples)
        if len(pcm) == 0:  # a stream resampler emits nothing for some frames
            return None
        async with self._order:
            self._check_open()
            return await self._recognizer._run(self._feed, pcm)

    async def finish(self) -> Transcript:
        """End the utterance and return its final transcript. The stream is spent afterwards."""
        async with self._order:
            self._check_open()
            self._finished = True
            return await self._recognizer._run(self._finish)

    def _check_open(self) -> None:
        if self._finished:
            raise RecognizerError(
                "this Vosk stream is finished (or failed); start a new one per utterance"
            )

    @contextlib.contextmanager
    def _decoding(self, what: str) -> Iterator[None]:
        """Time a Kaldi call; a failure closes the stream and becomes a RecognizerError."""
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            self._fail()
            if isinstance(exc, RecognizerError):
                raise
            raise RecognizerError(f"Vosk failed to {what}: {exc}") from exc
        finally:
            self._processing_s += time.perf_counter() - started

    # Blocking parts, run in a worker thread (or directly by `transcribe_sync`).
    def _feed(self, pcm: np.ndarray) -> str | None:
        with self._decoder_lock:
            if self._closed:  # a cancelled accept whose chunk came after finish
                return None
            kaldi = self._decoder()
            with self._decoding("decode audio"):
                if kaldi.AcceptWaveform(pcm.astype("<i2", copy=False).tobytes()):
                    self._close_segment(kaldi.Result())
                    partial_words: list[str] = []
                else:
                    partial_words = _parse(kaldi.PartialResult()).get("partial", "").split()
            self._samples += len(pcm)
            text = self._join([*self._final_words, *partial_words])
            if text == self._text:
                return None
            self._text = text
            return text

    def _finish(self) -> Transcript:
        with self._decoder_lock:
            if self._closed:
                raise RecognizerError("this Vosk stream is finished or has failed")
            kaldi = self._decoder()
            with self._decoding("finish the utterance"):
                self._close_segment(kaldi.FinalResult())
            self._closed = self._finished = True
            self._kaldi = None
            self._recognizer._give_back_decoder(kaldi)
            # Vosk's per-word confidences (lattice posteriors), averaged over the utterance.
            confidence = float(np.mean(self._confidences)) if self._confidences else None
            return Transcript(
                text=self._join(self._final_words),
                audio_ms=1000.0 * self._samples / self._recognizer.sample_rate,
                processing_ms=1000.0 * self._processing_s,
                language=self._recognizer.language,
                confidence=confidence,
            )

    def _decoder(self) -> vosk.KaldiRecognizer:
        if self._kaldi is None:
            # Not timed: the first stream of a process may include loading the model.
            self._kaldi = self._recognizer._take_decoder()
        return self._kaldi

    def _fail(self) -> None:
        """After a Vosk error the decoder's state is unknown: drop it, refuse further calls."""
        self._kaldi = None
        self._closed = self._finished = True

    def _close_segment(self, result_json: str) -> None:
        result = _parse(result_json)
        self._final_words.extend(result.get("text", "").split())
        self._confidences.extend(
            float(word["conf"]) for word in result.get("result", ()) if "conf" in word
        )

    def _join(self, words: list[str]) -> str:
        return ("" if self._recognizer.join_words else " ").join(words)


def find_vosk_model(name: str = DEFAULT_MODEL, models_dir: Path | None = None) -> Path | None:
    """The directory of installed Vosk model `name` (a `model_download` registry name), or None.

    Looks where `voicebot models download` puts it: `models_dir`, or the default models
    directory when that is None. Raises `ModelDownloadError` for a name not in the registry.
    """
    path = model_path(name, models_dir)
    return path if _looks_like_vosk_model(path) else None


def _load_model(model_dir: Path, sample_rate: int) -> vosk.Model:
    """Check the directory, then load it; every failure names the path and what to do."""
    if not model_dir.is_dir():
        raise RecognizerError(f"Vosk model directory {model_dir} does not exist; {_DOWNLOAD_HINT}")
    if not _looks_like_vosk_model(model_dir):
        raise RecognizerError(
            f"{model_dir} is not a Vosk model directory (no am/final.mdl); {_DOWNLOAD_HINT}"
        )
    model_rate = _model_sample_rate(model_dir)
    if model_rate != sample_rate:
        raise RecognizerError(
            f"the Vosk model in {model_dir} expects {model_rate} Hz audio but the recogniser "
            f"was configured for {sample_rate} Hz; resample the audio to {model_rate} Hz "
            "(voicebot.resample) and create the recogniser with that rate"
        )
    try:
        import vosk
    except ImportError as exc:
        raise RecognizerError(
            "the Vosk recogniser needs the `vosk` package (pip install vosk)"
        ) from exc
    # Kaldi logs to stderr on its own; let it through only when we are debugging.
    vosk.SetLogLevel(0 if log.isEnabledFor(logging.DEBUG) else -1)
    started = time.perf_counter()
    try:
        model = vosk.Model(str(model_dir))
    except Exception as exc:
        raise RecognizerError(
            f"cannot load the Vosk model in {model_dir} ({exc}); the directory may be "
            f"incomplete or corrupt: remove it and {_DOWNLOAD_HINT}"
        ) from exc
    log.info("vosk model loaded from %s in %.2fs", model_dir, time.perf_counter() - started)
    return model


def _looks_like_vosk_model(path: Path) -> bool:
    return (path / "am" / "final.mdl").is_file()


def _model_sample_rate(model_dir: Path) -> int:
    """The rate the model's features are computed at (Kaldi's `--sample-frequency`)."""
    try:
        conf = (model_dir / "conf" / "mfcc.conf").read_text(encoding="utf-8")
    except FileNotFoundError:
        return DEFAULT_SAMPLE_RATE
    except OSError as exc:
        raise RecognizerError(f"cannot read {model_dir / 'conf' / 'mfcc.conf'}: {exc}") from exc
    matches = _RATE_OPTION.findall(conf)
    return round(float(matches[-1])) if matches else DEFAULT_SAMPLE_RATE


def _parse(result_json: str) -> dict[str, Any]:
    try:
        result = json.loads(result_json)
    except json.JSONDecodeError as exc:
        raise RecognizerError(f"Vosk returned malformed JSON: {result_json[:200]!r}") from exc
    if not isinstance(result, dict):
        raise RecognizerError(f"Vosk returned unexpected JSON: {result_json[:200]!r}")
    return result
