"""Per-call behaviour that is not dialogue: timing of turns, recognition and waiting."""

from __future__ import annotations

from dataclasses import dataclass, field

from voicebot.endpointing import EndpointingConfig
from voicebot.waiting import WaitPolicy


@dataclass
class CallConfig:
    """Timing of one call's turns and recognition; ``[call]`` in the settings file."""

    endpointing: EndpointingConfig = field(default_factory=EndpointingConfig)
    yes_no_min_speech_ms: int = 150  # a short 「はい」 answers a confirmation
    preroll_ms: int = 200  # audio kept before the detected start of speech
    tail_ms: int = 100  # audio kept after the last speech frame
    speculative: bool = True  # recognise at the first short pause
    # ... but decode only once the pause has lasted this long (0 or None: at once)
    speculation_decode_after_ms: float | None = 200.0
    # A transcript that ends like an unfinished sentence (〜んですが、〜て) waits for this
    # much silence before the bot answers, in case the caller goes on.
    hold_incomplete_ms: int = 750
    # Speech resuming this soon after a turn, before its reply has played on, is the same
    # sentence: the turn is undone and the two parts are recognised together.
    merge_window_ms: int = 1000
    # Silence allowed after the caller asked for a moment (「少々お待ちください」) before
    # the bot asks whether they are ready; otherwise the endpointer's no-input time.
    held_no_input_ms: int = 30000
    max_call_ms: float = 20 * 60 * 1000.0
    # Fillers while the caller waits for a late reply, and when to give up on it.
    waiting: WaitPolicy = field(default_factory=WaitPolicy)
    # A hang-up this soon after the reply to a question started is a caller who gave up
    # waiting, not one who heard the answer.
    abandon_within_ms: float = 3000.0
