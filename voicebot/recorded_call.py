"""A call from a recorded caller track: the transport behind ``voicebot call caller.wav``.

The caller's recording starts when the bot's greeting has finished (as a caller would
wait), or at once with ``no_wait`` (talking over the greeting). Frames are delivered as
fast as the CPU allows on a virtual clock, or at the real pace with ``realtime``. When
the recording is over, the caller stays on the line until the bot has finished its
reply, then hangs up. Everything both sides said is kept for a stereo WAV.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from voicebot.clock import Clock
from voicebot.dialogue import Handover
from voicebot.events import BotSpeechStarted, BotSpeechStopped, CallerSpeechEnded, CallEvent
from voicebot.frames import AudioFrame, DtmfFrame
from voicebot.resample import resample
from voicebot.transport import TransferError
from voicebot.wavfile import WavAudio, write_wav

log = logging.getLogger(__name__)

FRAME_MS = 20
CALL_RATES = (8000, 16000)  # recordings at other rates are resampled to 16 kHz
HANG_UP_AFTER_MS = 1500  # after the recording ends and the bot is quiet
MAX_EXTRA_MS = 60_000  # the longest the line stays open after the recording


class RecordedCaller:
    """Transport that plays a recording as the caller and records the bot's answer."""

    name = "recording"

    def __init__(
        self,
        audio: WavAudio,
        clock: Clock,
        *,
        no_wait: bool = False,
        dtmf: list[tuple[float, str]] | None = None,
        transfer_ok: bool = True,
    ):
        rate = audio.sample_rate
        samples = audio.samples
        if rate not in CALL_RATES:
            samples = resample(samples, rate, 16000)
            rate = 16000
        self.sample_rate = rate
        self.clock = clock
        self._track = samples
        self._frame = rate * FRAME_MS // 1000
        self._track_started_ms: float | None = 0.0 if no_wait else None
        self._dtmf = sorted(dtmf or [])  # (ms after the track starts, digit)
        self._t = 0.0  # call time of the next frame
        self._bot_speaking = False
        self._hearing_filler = False
        self._quiet_since: float | None = None
        self._last_question_end: float | None = None  # the caller's last turn, as the bot saw it
        self._ended = False
        self._transfer_ok = transfer_ok
        self.caller_out: list[np.ndarray] = []
        self.bot_out: list[np.ndarray] = []
        self.transferred_to: Handover | None = None

    # -- EventSink: the caller listens to the bot ------------------------------------------
    def emit(self, event: CallEvent) -> None:
        if isinstance(event, CallerSpeechEnded):
            self._last_question_end = event.t_ms
        elif isinstance(event, BotSpeechStarted):
            self._bot_speaking = True
            self._quiet_since = None
            self._hearing_filler = event.kind == "filler"
        elif isinstance(event, BotSpeechStopped):
            self._bot_speaking = False
            if self._hearing_filler:  # 「少々お待ちください」 is no answer: keep waiting
                self._hearing_filler = False
                return
            self._quiet_since = event.t_ms
            if self._track_started_ms is None:  # the greeting is over: start talking
                self._track_started_ms = event.t_ms

    # -- transport -----------------------------------------------------------------------
    @property
    def track_ms(self) -> float:
        return 1000.0 * len(self._track) / self.sample_rate

    async def receive(self) -> AudioFrame | DtmfFrame | None:
        if self._ended:
            return None
        t = self._t
        if self._dtmf and self._track_started_ms is not None:
            at, digit = self._dtmf[0]
            if self._track_started_ms + at <= t:
                self._dtmf.pop(0)
                return DtmfFrame(digit)
        if self._should_hang_up(t):
            return None
        if self.clock.realtime:
            delay = (t - self.clock.now_ms()) / 1000.0
            if delay > 0:
                await asyncio.sleep(delay)
        frame = np.zeros(self._frame, dtype=np.int16)
        if self._track_started_ms is not None:
            offset = round((t - self._track_started_ms) * self.sample_rate / 1000)
            if 0 <= offset < len(self._track):
                chunk = self._track[offset : offset + self._frame]
                frame[: len(chunk)] = chunk
        self._t = t + FRAME_MS
        self.caller_out.append(frame)
        return AudioFrame.from_samples(frame, self.sample_rate, t)

    def _should_hang_up(self, t: float) -> bool:
        if self._track_started_ms is None:
            return False
        track_end = self._track_started_ms + self.track_ms
        if t < track_end:
            return False
        if t > track_end + MAX_EXTRA_MS:
            return True
        if self._bot_speaking:
            return False
        # A caller waits for the answer to their last question, however long it takes.
        answered = self._last_question_end is None or (
            self._quiet_since is not None and self._quiet_since > self._last_question_end
        )
        since = max(self._quiet_since or 0.0, track_end)
        return answered and t - since >= HANG_UP_AFTER_MS

    async def send(self, frame: AudioFrame) -> None:
        self.bot_out.append(frame.samples.copy())

    async def transfer(self, handover: Handover) -> str | None:
        if not self._transfer_ok:
            raise TransferError("recorded call: transfer refused (simulated)")
        log.info("recorded call: transfer to staff (simulated)")
        self.transferred_to = handover
        self._ended = True

    async def hangup(self) -> None:
        self._ended = True

    def write_stereo(self, path: str) -> None:
        """Caller on the left, bot on the right."""
        n = max(len(self.caller_out), len(self.bot_out))
        left = np.concatenate(self.caller_out) if self.caller_out else np.zeros(0, np.int16)
        right = np.concatenate(self.bot_out) if self.bot_out else np.zeros(0, np.int16)
        length = n * self._frame
        stereo = np.zeros((length, 2), dtype=np.int16)
        stereo[: len(left), 0] = left
        stereo[: len(right), 1] = right
        write_wav(path, stereo, self.sample_rate)
