"""When the caller's words are recognised: early, once, and never for nothing.

Recognition starts speculatively at the first short pause in the caller's speech, so that
it is usually done when the turn ends; if nothing was said after that pause the result is
reused, otherwise it is cancelled and the whole turn recognised. On a live call a
recogniser that can (``holds_decoding``) begins a speculation's decoding only once the pause
has lasted ``decode_after_ms`` or the turn has ended (``DecodeHold``): most pauses inside
a sentence are over by then. The hold is shorter where decoding is slow: it is released
early enough for a decoding as long as the recogniser's recent ones
(``decode_ms_estimate``) to be done when the turn would end (``ready_by_ms``), so that on
a slower CPU the caller does not wait for the hold. Work for a call that has moved on (the
caller spoke again, the call ended) is cancelled.

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
from voicebot.asr.decode_hold import DecodeHold
from voicebot.caller_audio import CallerAudio
from voicebot.clock import Clock
from voicebot.endpointing import SpeechEnd
from voicebot.jobs import Job

log = logging.getLogger(__name__)

# Kept free between a held decoding's expected end and the end of the turn: the matching
# and the call loop's next frames (``bench/latency.py``, dev calls).
READY_MARGIN_MS = 50.0

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
        # set by the call from its settings; None or 0: a speculation decodes at once
        self.decode_after_ms: float | None = None
        # set by the call: the pause after which its turn ends (the endpointer's end silence)
        self.ready_by_ms: float | None = None
        # job, last_speech_ms, where the recognised audio starts, and its decoding's hold
        self._spec: tuple[Job[Transcript], float, float, DecodeHold | None] | None = None
        self._current: Finished | None = None

    def hold_decoding(self, after_ms: float | None, ready_by_ms: float | None) -> None:
        """Hold a speculation's decoding until the pause has lasted ``after_ms`` (None or 0:
        decode at once), or less, so as to be done by a pause of ``ready_by_ms``."""
        self.decode_after_ms, self.ready_by_ms = after_ms, ready_by_ms

    @property
    def busy(self) -> bool:
        """A turn is being recognised."""
        return self._current is not None

    async def _start(
        self, start_ms: float, end_ms: float, hold: DecodeHold | None = None
    ) -> Job[Transcript]:
        audio = self.audio.cut(start_ms, end_ms)
        return await Job.start(self.clock, self._recognised(audio, hold), lane=self.recognizer)

    async def _recognised(self, audio: np.ndarray, hold: DecodeHold | None) -> Transcript:
        if hold is None:
            transcript = await self.recognizer.transcribe(audio)
        else:
            transcript = await self.recognizer.transcribe(audio, hold=hold)  # type: ignore[call-arg]
        if self.prepare is not None:
            try:
                await asyncio.to_thread(self.prepare, transcript)
            except Exception:  # the dialogue does the same work again and reports what fails
                log.exception("preparing the understanding of a recognition failed")
        return transcript

    async def speculate(self, start_ms: float, last_speech_ms: float) -> None:
        """The caller paused: recognise what they said so far, in case the turn ends here."""
        self.drop_speculation()  # a pause earlier in the utterance is stale now
        hold = self._hold(last_speech_ms)
        job = await self._start(start_ms, last_speech_ms, hold)
        self._spec = (job, last_speech_ms, start_ms, hold)

    def _hold(self, last_speech_ms: float) -> DecodeHold | None:
        """A hold for a speculation's decoding: live calls only (a replay's clock does not
        wait), and only for a recogniser that takes one."""
        if (
            not self.decode_after_ms
            or not self.clock.realtime
            or not getattr(self.recognizer, "holds_decoding", False)
        ):
            return None
        release_ms = float(self.decode_after_ms)
        took_ms = getattr(self.recognizer, "decode_ms_estimate", None)
        if self.ready_by_ms is not None and took_ms is not None:
            release_ms = min(release_ms, self.ready_by_ms - took_ms - READY_MARGIN_MS)
        paused_ms = self.clock.now_ms() - last_speech_ms
        if release_ms <= paused_ms:
            return None  # no time to lose: decode as soon as the encoder is done
        return DecodeHold((release_ms - paused_ms) / 1000.0)

    def drop_speculation(self) -> None:
        if self._spec is not None:
            self._spec[0].cancel()
            self._spec = None

    async def recognise(self, start_ms: float, end: SpeechEnd) -> None:
        """The turn ended: reuse the speculative result if nothing was said since, else start."""
        spec, self._spec = self._spec, None
        turn = SpeechEnd(end.at_ms, start_ms, end.last_speech_ms)
        if spec is not None and spec[1] >= end.last_speech_ms - 1e-6 and spec[2] == start_ms:
            if spec[3] is not None:
                spec[3].release()  # the turn ended at that pause: decode now
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
