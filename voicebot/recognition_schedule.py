"""When the caller's words are recognised: early, once, and never for nothing.

Recognition starts speculatively at the first short pause in the caller's speech, so that
it is usually done when the turn ends; if nothing was said after that pause the result is
reused, otherwise it is cancelled and the whole turn recognised. Work for a call that has
moved on (the caller spoke again, the call ended) is cancelled.

A recognition is finished only when the understanding of what it heard is prepared too
(``prepare``, in a worker thread): that work can take as long as the recognition itself
(more decodings when the first does not settle the turn), and inside the job the call
loop goes on handling frames, playing the bot's audio and watching for barge-in meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from voicebot.asr.base import Recognizer, Transcript
from voicebot.caller_audio import CallerAudio
from voicebot.clock import Clock
from voicebot.endpointing import SpeechEnd
from voicebot.jobs import Job

log = logging.getLogger(__name__)

Finished = tuple[Job[Transcript], SpeechEnd, bool]  # job, the turn, whether speculative


class RecognitionSchedule:
    """At most one speculative and one final recognition per call."""

    def __init__(
        self,
        recognizer: Recognizer,
        clock: Clock,
        audio: CallerAudio,
        prepare: Callable[[Transcript], None] | None = None,
    ) -> None:
        self.recognizer = recognizer
        self.clock = clock
        self.audio = audio
        self.prepare = prepare  # blocking; its results are kept by the transcript and matcher
        # job, last_speech_ms, and where the recognised audio starts
        self._spec: tuple[Job[Transcript], float, float] | None = None
        self._current: Finished | None = None

    @property
    def busy(self) -> bool:
        """A turn is being recognised."""
        return self._current is not None

    async def _start(self, start_ms: float, end_ms: float) -> Job[Transcript]:
        audio = self.audio.cut(start_ms, end_ms)
        return await Job.start(self.clock, self._recognised(audio), lane=self.recognizer)

    async def _recognised(self, audio: np.ndarray) -> Transcript:
        transcript = await self.recognizer.transcribe(audio)
        if self.prepare is not None:
            try:
                await asyncio.to_thread(self.prepare, transcript)
            except Exception:  # the dialogue does the same work again and reports what fails
                log.exception("preparing the understanding of a recognition failed")
        return transcript

    async def speculate(self, start_ms: float, last_speech_ms: float) -> None:
        """The caller paused: recognise what they said so far, in case the turn ends here."""
        self.drop_speculation()  # a pause earlier in the utterance is stale now
        self._spec = (await self._start(start_ms, last_speech_ms), last_speech_ms, start_ms)

    def drop_speculation(self) -> None:
        if self._spec is not None:
            self._spec[0].cancel()
            self._spec = None

    async def recognise(self, start_ms: float, end: SpeechEnd) -> None:
        """The turn ended: reuse the speculative result if nothing was said since, else start."""
        spec, self._spec = self._spec, None
        turn = SpeechEnd(end.at_ms, start_ms, end.last_speech_ms)
        if spec is not None and spec[1] >= end.last_speech_ms - 1e-6 and spec[2] == start_ms:
            self._current = (spec[0], turn, True)
            return
        if spec is not None:
            spec[0].cancel()
        self._current = (await self._start(start_ms, end.last_speech_ms), turn, False)

    def take_finished(self) -> Finished | None:
        """The finished recognition of the turn, once; None while it runs."""
        if self._current is None or not self._current[0].done():
            return None
        done, self._current = self._current, None
        return done

    def cancel(self) -> None:
        """Work still under way is of no use any more."""
        self.drop_speculation()
        if self._current is not None:
            self._current[0].cancel()
            self._current = None
