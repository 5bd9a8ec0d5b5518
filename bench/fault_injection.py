"""Recogniser and synthesiser wrappers that fail on demand, for the soak bench.

The soak service (bench/soak_service.py) builds the real bot with these around its real
Whisper recogniser and speech synthesiser. Faults are armed from the bench process over
the service's standard input only: nothing here is reachable from the network, and the
product's web app has no fault endpoint.

A synthesiser fault needs a synthesis on the call path, but every fixed utterance is
rendered before the first call; ``ForgetfulSpeechCache`` and ``ForgetfulVoice`` let the
bench forget chosen texts (on disk and in memory) so that the next call asking for one of
them synthesises it, and meets the armed fault.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from voicebot.asr.base import RecognizerError, Transcript
from voicebot.tts.base import Speech, SynthesisError
from voicebot.tts.cache import SpeechCache
from voicebot.voice import Voice


class FaultyRecognizer:
    """The real recogniser, failing every recognition while armed.

    Armed until ``disarm`` (the service disarms it once a call has met the failure) or
    until ``max_s`` have passed; a speculative recognition that meets the fault may be
    discarded by the call, which is why one failure is not enough.
    """

    def __init__(self, inner: Any):
        self._inner = inner
        self._armed_until = 0.0
        self.raised = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # sample_rate, load, prompts, lanes ...

    def arm(self, max_s: float = 30.0) -> None:
        self._armed_until = time.monotonic() + max_s

    def disarm(self) -> None:
        self._armed_until = 0.0

    @property
    def armed(self) -> bool:
        return time.monotonic() < self._armed_until

    async def transcribe(self, samples: np.ndarray) -> Transcript:
        if self.armed:
            self.raised += 1
            raise RecognizerError("injected recogniser fault (soak bench)")
        return await self._inner.transcribe(samples)


class FaultySynthesizer:
    """The real synthesiser; the next synthesis after ``arm`` fails once."""

    def __init__(self, inner: Any):
        self._inner = inner
        self._armed = False
        self.raised = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # engine, voice, sample_rate (the cache key)

    def arm(self) -> None:
        self._armed = True

    @property
    def armed(self) -> bool:
        return self._armed

    async def synthesize(self, text: str) -> Speech:
        if self._armed:
            self._armed = False
            self.raised += 1
            raise SynthesisError("injected synthesiser fault (soak bench)")
        return await self._inner.synthesize(text)


class ForgetfulSpeechCache(SpeechCache):
    """A speech cache that treats forgotten texts as not rendered until stored again."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.forgotten: set[str] = set()

    def forget(self, texts: list[str]) -> None:
        self.forgotten.update(texts)

    def get(self, text: str) -> Speech | None:
        if text in self.forgotten:
            return None
        return super().get(text)

    def put(self, text: str, speech: Speech):  # type: ignore[no-untyped-def]
        self.forgotten.discard(text)
        return super().put(text, speech)


class ForgetfulVoice(Voice):
    """The bot's voice, whose in-memory clips of chosen texts can be dropped."""

    def forget(self, texts: list[str]) -> None:
        drop = set(texts)
        for key in [k for k in self._clips if k[0] in drop]:
            del self._clips[key]
