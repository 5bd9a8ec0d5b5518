"""System voices through pyttsx3 (espeak-ng on Linux, SAPI5 on Windows, NSSpeech on macOS).

A fallback for machines without the Kokoro model, and a second, very different voice for
tests. pyttsx3 is not thread-safe, its espeak driver can be initialised only once per process
(it registers one global callback), and `runAndWait` blocks. So every pyttsx3 call of the
process runs on one dedicated worker thread, which creates the engine, renders each utterance
to a temporary WAV file with `save_to_file` + `runAndWait`, and reads it back with
`voicebot.wavfile`.

pyttsx3 2.99's espeak driver ends `runAndWait` as soon as synthesis *starts*, and writes the
file later from espeak's own thread. So the worker also waits for the engine's
"finished-utterance" notification, which that driver sends after the file is closed (other
drivers send it before `runAndWait` returns, so the wait costs them nothing).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from voicebot.tts.base import Speech, SynthesisError
from voicebot.tts.spoken_text import to_spoken
from voicebot.wavfile import WavFormatError, read_wav

log = logging.getLogger(__name__)

# pyttsx3's espeak driver writes 22.05 kHz files. Other drivers may differ; each Speech
# carries the rate of the file actually written.
ESPEAK_SAMPLE_RATE = 22050
RENDER_TIMEOUT_S = 60.0  # espeak renders a long answer in well under a second

_worker_lock = threading.Lock()
_worker: ThreadPoolExecutor | None = None
_engine: Any = None  # the pyttsx3 Engine; touched only on the worker thread
_finished = threading.Event()  # set by the engine when an utterance's file is complete
_errors: list[BaseException] = []  # reported by the engine's "error" notification


def _worker_executor() -> ThreadPoolExecutor:
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyttsx3")
        return _worker


def _on_error(exception: BaseException | None = None, **_: Any) -> None:
    _errors.append(exception or RuntimeError("unknown pyttsx3 error"))
    _finished.set()


def _get_engine() -> Any:
    """Create the pyttsx3 engine on first use. Runs on the worker thread only."""
    global _engine
    if _engine is None:
        import pyttsx3

        _engine = pyttsx3.init()
        _engine.connect("finished-utterance", lambda **_: _finished.set())
        _engine.connect("error", _on_error)
        # pyttsx3 2.99's espeak driver prints "Audio saved to …" on stdout, which would
        # corrupt JSON output; give that module a quiet print (module globals win over
        # builtins, and nothing else is affected).
        driver = sys.modules.get("pyttsx3.drivers.espeak")
        if driver is not None:
            driver.print = lambda *args, **_: log.debug(" ".join(map(str, args)))  # type: ignore[attr-defined]
        atexit.register(_release_engine)
    return _engine


def _release_engine() -> None:
    """Drop the engine while modules are still whole: left to interpreter shutdown, its
    driver's __del__ runs after pyttsx3's globals are gone and prints a traceback."""
    global _engine
    _engine = None


def _japanese_voice_id(engine: Any) -> str | None:
    """The first voice that lists Japanese, preferring ones that need no extra data (mbrola)."""
    candidates = []
    for voice in engine.getProperty("voices"):
        languages = [str(lang).lower() for lang in (voice.languages or [])]
        text = " ".join([voice.id.lower(), str(voice.name).lower(), *languages])
        if "ja" in languages or "japanese" in text or voice.id.lower().endswith("/ja"):
            candidates.append(voice.id)
    candidates.sort(key=lambda vid: vid.lower().startswith("mb/"))  # mbrola voices last
    return candidates[0] if candidates else None


def _render(text: str, voice: str | None, rate_wpm: int | None) -> Speech:
    """Render one utterance to a temporary WAV and read it back. Worker thread only."""
    engine = _get_engine()
    if voice is not None:
        engine.setProperty("voice", voice)
    if rate_wpm is not None:
        engine.setProperty("rate", rate_wpm)
    fd, path = tempfile.mkstemp(prefix="voicebot-pyttsx3-", suffix=".wav")
    os.close(fd)
    try:
        _finished.clear()
        _errors.clear()
        engine.save_to_file(text, path)
        engine.runAndWait()
        if not _finished.wait(RENDER_TIMEOUT_S):
            raise SynthesisError(f"pyttsx3 did not finish {text[:40]!r} in {RENDER_TIMEOUT_S} s")
        if _errors:
            raise _errors[0]
        audio = read_wav(path)
    except WavFormatError as exc:
        raise SynthesisError(f"pyttsx3 wrote no usable audio for {text[:40]!r}: {exc}") from exc
    except SynthesisError:
        raise
    except Exception as exc:
        raise SynthesisError(f"pyttsx3 failed on {text[:40]!r}: {exc}") from exc
    finally:
        os.unlink(path)
    return Speech(audio.samples, audio.sample_rate)


def _pick_voice(requested: str | None) -> str:
    """Resolve the voice on the worker thread: as requested, else Japanese, else default."""
    engine = _get_engine()
    if requested:
        return requested
    voice = _japanese_voice_id(engine)
    if voice is None:
        voice = str(engine.getProperty("voice"))
        log.warning("no Japanese system voice found; pyttsx3 falls back to %s", voice)
    return voice


class Pyttsx3Synthesizer:
    """Speech from the operating system's voices. Quality is poor but it needs no model.

    `voice` is a pyttsx3 voice id (on Linux an espeak-ng id such as "jpx/ja"); by default
    the first Japanese voice found. The constructor starts the engine on the worker thread
    and waits for it (tens of milliseconds), so build this at start-up, not per call.
    """

    engine = "pyttsx3"

    def __init__(
        self, voice: str | None = None, rate_wpm: int | None = None, spoken_text: bool = True
    ) -> None:
        try:
            self.voice = _worker_executor().submit(_pick_voice, voice).result()
        except Exception as exc:
            raise SynthesisError(f"could not start pyttsx3: {exc}") from exc
        self.rate_wpm = rate_wpm
        self.spoken_text = spoken_text
        self.sample_rate = ESPEAK_SAMPLE_RATE
        # espeak-ng cannot read kanji (it spells them out as "Chinese letter"), but it can
        # read katakana: on Linux give it the pyopenjtalk reading instead of the text.
        self.kana_reading = sys.platform.startswith("linux")

    async def synthesize(self, text: str) -> Speech:
        """Render `text` on the pyttsx3 worker thread."""
        spoken = to_spoken(text) if self.spoken_text else text
        if self.kana_reading:
            from faq.reading import reading_with_pauses

            spoken = reading_with_pauses(spoken)
        if not spoken.strip():
            return Speech(np.zeros(0, dtype=np.int16), self.sample_rate)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            _worker_executor(), _render, spoken, self.voice, self.rate_wpm
        )
