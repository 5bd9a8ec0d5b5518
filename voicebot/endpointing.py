"""Endpointing: turning per-window speech probabilities into turn events.

The bot must start answering within ~500 ms of the caller falling silent, so the end of a
turn is declared after a short silence (`end_silence_ms`, 350 ms by default) and a
`ShortPause` is announced even earlier so that recognition can start speculatively. Short
sounds are filtered on the way in: speech must last `speech_onset_ms` before it is reported
at all, and `min_speech_ms` before it counts as a turn. Clicks and noise bursts never get
that far (Silero rates them as non-speech); voiced sounds are stretched by the VAD's
hangover (below), so a ~200 ms 「はい」 looks like 250-400 ms of speech and is not reliably
kept from being a turn by `min_speech_ms` alone.

`Endpointer` is a small explicit state machine, fed once per VAD window with the window's
end time ("now" on the stream clock) and its speech probability:

    IDLE --p >= start_threshold--> ONSET --speech for speech_onset_ms--> SPEECH
    ONSET --p < continue_threshold--> IDLE                    (too short: nothing reported)
    SPEECH --silence for end_silence_ms, or max_utterance_ms reached--> IDLE

While in SPEECH, a window stays speech while p >= continue_threshold (hysteresis); once the
caller has paused, speech resumes only at p >= start_threshold (after a reported
`ShortPause`, `SpeechResumed` says so, so that the speculative work can stop).

Times are as the VAD sees them. Silero keeps rating ~50-175 ms after the end of speech as
speech (its hangover), so `last_speech_ms` is that much after the true end, and a turn ends
about hangover + `end_silence_ms` after the caller stopped; pauses inside a turn are
likewise bridged up to about `end_silence_ms` + hangover. `bench/vad.py` measures both.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pydantic import BaseModel, Field, model_validator


class EndpointingConfig(BaseModel):
    """When the caller's speech starts and ends, in milliseconds of audio."""

    start_threshold: float = Field(
        0.5, gt=0, le=1, description="Speech probability at which speech may start"
    )
    continue_threshold: float = Field(
        0.35,
        gt=0,
        le=1,
        description="Speech probability that keeps ongoing speech going (hysteresis)",
    )
    speech_onset_ms: int = Field(
        120,
        ge=0,
        description=(
            "Continuous speech needed to report SpeechStart (barge-in); shorter sounds are "
            "ignored. Capped at min_speech_ms so that a short accepted answer is never missed"
        ),
    )
    min_speech_ms: int = Field(
        250,
        ge=0,
        description=(
            "Speech (as the VAD sees it, hangover included) an utterance must contain to count "
            "as a turn; less is a blip. Lower it per dialogue state (e.g. for yes/no questions)"
        ),
    )
    # Two 32 ms VAD windows. Against 120 (four windows) it cut the reply's p50 by 60-160 ms
    # (bench/latency.py, 1/4/8 calls, AMD EPYC with and without AVX-512) for 1-2 more
    # speculations per 12 turns, which are dropped when the caller goes on.
    short_pause_ms: int | None = Field(
        64,
        gt=0,
        description=(
            "Silence after which ShortPause is emitted, to start recognition speculatively; "
            "None disables it. Must be shorter than end_silence_ms"
        ),
    )
    end_silence_ms: int = Field(
        350, gt=0, description="Silence after speech that ends the caller's turn"
    )
    no_input_ms: int = Field(
        8000, gt=0, description="Time after arm_no_input() without a turn before NoInput"
    )
    max_utterance_ms: int = Field(
        15000, gt=0, description="Longest utterance; at this length the turn is ended by force"
    )

    @model_validator(mode="after")
    def _consistent(self) -> EndpointingConfig:
        if self.continue_threshold > self.start_threshold:
            raise ValueError("continue_threshold must not exceed start_threshold")
        if self.short_pause_ms is not None and self.short_pause_ms >= self.end_silence_ms:
            raise ValueError("short_pause_ms must be shorter than end_silence_ms (or None)")
        if self.min_speech_ms >= self.max_utterance_ms:
            raise ValueError("min_speech_ms must be shorter than max_utterance_ms")
        return self


@dataclass(frozen=True, slots=True)
class EndpointEvent:
    """Something the dialogue must react to; `at_ms` is when it was decided (stream clock)."""

    at_ms: float


@dataclass(frozen=True, slots=True)
class SpeechStart(EndpointEvent):
    """The caller has been speaking for `speech_onset_ms`: stop or duck the bot's audio."""

    speech_start_ms: float


@dataclass(frozen=True, slots=True)
class ShortPause(EndpointEvent):
    """The caller paused inside a turn-length utterance; recognition may start speculatively.

    Emitted at most once per pause. If speech resumes, the speculative result is stale.
    """

    speech_start_ms: float
    last_speech_ms: float


@dataclass(frozen=True, slots=True)
class SpeechResumed(EndpointEvent):
    """The caller spoke again after a reported ``ShortPause``: work started for that pause
    (a speculative recognition) is stale now and can be stopped at once."""

    speech_start_ms: float


@dataclass(frozen=True, slots=True)
class SpeechEnd(EndpointEvent):
    """The caller's turn is over. Latency is measured from `last_speech_ms`."""

    speech_start_ms: float
    last_speech_ms: float


@dataclass(frozen=True, slots=True)
class SpeechDiscarded(EndpointEvent):
    """Speech that was reported by SpeechStart ended before reaching `min_speech_ms`.

    Not a turn (cough, backchannel): resume whatever SpeechStart interrupted.
    """

    speech_start_ms: float
    last_speech_ms: float


@dataclass(frozen=True, slots=True)
class NoInput(EndpointEvent):
    """No turn was taken within `no_input_ms` of `arm_no_input`."""


@dataclass(frozen=True, slots=True)
class MaxLength(EndpointEvent):
    """The utterance reached `max_utterance_ms` and is ended by force.

    Always followed, in the same update, by the SpeechEnd (or SpeechDiscarded) closing it.
    If the caller goes on talking, that is a new utterance with its own SpeechStart.
    """

    speech_start_ms: float


class EndpointState(Enum):
    """Where the caller is: silent, possibly starting to speak, or speaking."""

    IDLE = "idle"
    ONSET = "onset"
    SPEECH = "speech"


class Endpointer:
    """Per-call turn detector; feed it every VAD window with `update` (see module docs)."""

    def __init__(self, config: EndpointingConfig | None = None, window_ms: float = 32.0) -> None:
        if window_ms <= 0:
            raise ValueError(f"window_ms must be positive, got {window_ms!r}")
        self.config = config or EndpointingConfig()
        self.window_ms = float(window_ms)
        self._min_speech_override: int | None = None
        self._no_input_deadline: float | None = None
        self._no_input_wait: float | None = None  # the wait last armed (None: the config's)
        self._last_time: float | None = None
        self._to_idle()

    @property
    def state(self) -> EndpointState:
        """Current state of the machine."""
        return self._state

    @property
    def min_speech_ms(self) -> int:
        """Speech needed for a turn right now (the override if set, else the config value)."""
        if self._min_speech_override is not None:
            return self._min_speech_override
        return self.config.min_speech_ms

    def set_min_speech_ms(self, min_speech_ms: int | None) -> None:
        """Override `min_speech_ms` for the current dialogue state; None restores the default.

        E.g. lower it while waiting for a yes/no answer, where a short 「はい」 is the turn.
        Applies to an utterance already in progress too.
        """
        if min_speech_ms is not None and min_speech_ms < 0:
            raise ValueError(f"min_speech_ms must not be negative, got {min_speech_ms!r}")
        self._min_speech_override = min_speech_ms

    def arm_no_input(self, now_ms: float, wait_ms: float | None = None) -> None:
        """Start the no-input timer (typically when the bot's prompt finished playing):
        NoInput after ``wait_ms``, or the configured ``no_input_ms`` when None."""
        self._no_input_wait = wait_ms
        wait = self.config.no_input_ms if wait_ms is None else wait_ms
        self._no_input_deadline = now_ms + wait

    def rearm_no_input(self, now_ms: float) -> None:
        """Start the no-input timer again with the wait it was last armed with: a noise too
        short to be a turn does not cut short the time a caller was given."""
        self.arm_no_input(now_ms, self._no_input_wait)

    def disarm_no_input(self) -> None:
        """Stop the no-input timer without an event."""
        self._no_input_deadline = None

    def reset(self) -> None:
        """Back to IDLE with no timers, keeping the config and the min-speech override."""
        self._no_input_deadline = None
        self._last_time = None
        self._to_idle()

    def update(self, time_ms: float, probability: float) -> list[EndpointEvent]:
        """Advance by one VAD window ending at `time_ms`; return the events it caused."""
        if self._last_time is not None and time_ms < self._last_time:
            raise ValueError(f"time went backwards: {time_ms} after {self._last_time}")
        self._last_time = time_ms
        events: list[EndpointEvent] = []
        if self._state is EndpointState.IDLE:
            self._idle(time_ms, probability, events)
        elif self._state is EndpointState.ONSET:
            self._onset(time_ms, probability, events)
        else:
            self._speech(time_ms, probability, events)
        return events

    # --- states -------------------------------------------------------------------------

    def _idle(self, now: float, probability: float, events: list[EndpointEvent]) -> None:
        if probability >= self.config.start_threshold:
            self._state = EndpointState.ONSET
            self._speech_start = now - self.window_ms
            self._onset(now, probability, events)
        elif self._no_input_deadline is not None and now >= self._no_input_deadline:
            self._no_input_deadline = None
            events.append(NoInput(now))

    def _onset(self, now: float, probability: float, events: list[EndpointEvent]) -> None:
        if probability < self.config.continue_threshold:
            self._to_idle()  # too short to report: a click or a blip
            self._idle(now, probability, events)
            return
        self._mark_speech(now)
        # A short answer that is accepted as a turn must also be able to start one.
        onset_needed = min(self.config.speech_onset_ms, self.min_speech_ms)
        if now - self._speech_start >= onset_needed:
            self._state = EndpointState.SPEECH
            events.append(SpeechStart(now, self._speech_start))

    def _speech(self, now: float, probability: float, events: list[EndpointEvent]) -> None:
        threshold = self.config.start_threshold if self._paused else self.config.continue_threshold
        if probability >= threshold:
            if self._pause_reported:
                events.append(SpeechResumed(now, self._speech_start))
            self._mark_speech(now)
        else:
            self._paused = True
            silence = now - self._last_speech
            if silence >= self.config.end_silence_ms:
                self._close(now, events)
                return
            short_pause = self.config.short_pause_ms
            if (
                short_pause is not None
                and silence >= short_pause
                and not self._pause_reported
                and self._voiced_ms >= self.min_speech_ms
            ):
                self._pause_reported = True
                events.append(ShortPause(now, self._speech_start, self._last_speech))
        if now - self._speech_start >= self.config.max_utterance_ms:
            events.append(MaxLength(now, self._speech_start))
            self._close(now, events)

    # --- helpers ------------------------------------------------------------------------

    def _mark_speech(self, now: float) -> None:
        self._last_speech = now
        self._voiced_ms += self.window_ms
        self._paused = False
        self._pause_reported = False

    def _close(self, now: float, events: list[EndpointEvent]) -> None:
        if self._voiced_ms >= self.min_speech_ms:
            events.append(SpeechEnd(now, self._speech_start, self._last_speech))
            self._no_input_deadline = None  # the caller took a turn
        else:
            events.append(SpeechDiscarded(now, self._speech_start, self._last_speech))
        self._to_idle()

    def _to_idle(self) -> None:
        self._state = EndpointState.IDLE
        self._speech_start = 0.0
        self._last_speech = 0.0
        self._voiced_ms = 0.0
        self._paused = False
        self._pause_reported = False
