"""Who has the floor: voice activity, the caller's turns, and barge-in over the bot.

Each 20 ms caller frame goes through Silero VAD and the endpointing state machine, which
turn it into turn events (speech started, a short pause, the turn ended, no input).
Barge-in pauses the bot on the very next frame once the caller seems to speak, and stops
it once that speech is long enough to be a turn; a cough or a short 「はい」 lets it
resume where it paused. Closing words and transfer notices are not interrupted.
"""

from __future__ import annotations

from enum import Enum

from voicebot.endpointing import Endpointer, EndpointingConfig, EndpointState
from voicebot.frames import AudioFrame
from voicebot.playout import Playout
from voicebot.resample import StreamResampler
from voicebot.vad import SUPPORTED_RATES, load_vad, release_vad


class BargeIn(Enum):
    """What barge-in did to the bot's speech in this frame."""

    NONE = "none"
    STOP = "stop"  # the caller's speech is a turn: stop the bot for good


class TurnTaking:
    """VAD and endpointing for one call, and barge-in over its playout."""

    def __init__(self, rate: int, endpointing: EndpointingConfig) -> None:
        vad_rate = rate if rate in SUPPORTED_RATES else 16000
        self._to_vad = None if rate == vad_rate else StreamResampler(rate, 16000)
        self.vad = load_vad(vad_rate)
        self.endpointer = Endpointer(endpointing, window_ms=self.vad.window_ms)
        self._barge_in_at: float | None = None

    @property
    def caller_speaking(self) -> bool:
        """The caller is (or may be) speaking now."""
        return self.endpointer.state is not EndpointState.IDLE

    @property
    def barging_in(self) -> bool:
        return self._barge_in_at is not None

    def events(self, frame: AudioFrame, start_ms: float) -> list[object]:
        """The turn events this caller frame produced, in order."""
        vad_frame = frame
        if self._to_vad is not None:
            vad_frame = AudioFrame.from_samples(
                self._to_vad.process(frame.samples), 16000, start_ms
            )
        found: list[object] = []
        for window in self.vad.process_frame(vad_frame):
            found.extend(self.endpointer.update(window.end_ms, window.probability))
        return found

    def barge_in(self, now_ms: float, playout: Playout) -> BargeIn:
        """Pause the bot as soon as the caller seems to speak; say STOP once that is a turn."""
        state = self.endpointer.state
        if self._barge_in_at is None:
            current = playout.current
            if (
                state is not EndpointState.IDLE
                and current is not None
                and current.interruptible
                and not playout.paused
            ):
                playout.pause()
                self._barge_in_at = now_ms - self.vad.window_ms
            return BargeIn.NONE
        if state is EndpointState.IDLE:
            playout.resume()  # it was not a turn: carry on speaking
            self._barge_in_at = None
        elif (
            state is EndpointState.SPEECH
            and now_ms - self._barge_in_at >= self.endpointer.min_speech_ms
        ):
            return BargeIn.STOP
        return BargeIn.NONE

    def expect_short_answer(self, min_speech_ms: int) -> None:
        """The bot asked a yes/no question: a short 「はい」 is a whole turn."""
        self.endpointer.set_min_speech_ms(min_speech_ms)

    def answered(self) -> None:
        """A caller turn was decided: the usual minimum length of speech applies again."""
        self.endpointer.set_min_speech_ms(None)

    def close(self) -> None:
        """The call is over: its VAD goes back to the pool for the next call."""
        release_vad(self.vad)

    def bot_stopped(self) -> None:
        """The bot's speech was stopped: no barge-in is under way any more."""
        self._barge_in_at = None
