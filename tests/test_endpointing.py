"""Exact timings of the endpointing state machine, on synthetic probability sequences.

Windows are 32 ms and window i (from 0) ends at (i + 1) * 32 ms, so every expected time
below is a multiple of 32.
"""

import pydantic
import pytest

from voicebot.endpointing import (
    Endpointer,
    EndpointingConfig,
    EndpointState,
    MaxLength,
    NoInput,
    ShortPause,
    SpeechDiscarded,
    SpeechEnd,
    SpeechResumed,
    SpeechStart,
)

W = 32
SPEECH, MAYBE, SILENT = 0.9, 0.4, 0.05


def feed(endpointer: Endpointer, probabilities: list[float], first_window: int = 0) -> list:
    events = []
    for i, p in enumerate(probabilities, start=first_window):
        events += endpointer.update((i + 1) * W, p)
    return events


def windows(probability: float, ms: int) -> list[float]:
    assert ms % W == 0, "keep the sequences window-aligned"
    return [probability] * (ms // W)


def test_one_utterance_gives_start_and_end_at_exact_times() -> None:
    ep = Endpointer(EndpointingConfig(end_silence_ms=352, short_pause_ms=192))
    # Silence 0-320, speech 320-1280, silence after.
    events = feed(ep, windows(SILENT, 320) + windows(SPEECH, 960) + windows(SILENT, 640))
    assert events == [
        SpeechStart(at_ms=448, speech_start_ms=320),  # 4 windows = 128 ms >= 120 ms onset
        ShortPause(at_ms=1280 + 192, speech_start_ms=320, last_speech_ms=1280),
        SpeechEnd(at_ms=1280 + 352, speech_start_ms=320, last_speech_ms=1280),
    ]
    assert ep.state is EndpointState.IDLE


def test_end_silence_is_rounded_up_to_whole_windows() -> None:
    ep = Endpointer(EndpointingConfig(end_silence_ms=350, short_pause_ms=None))
    events = feed(ep, windows(SPEECH, 640) + windows(SILENT, 640))
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert ends == [SpeechEnd(at_ms=640 + 352, speech_start_ms=0, last_speech_ms=640)]


def test_hysteresis_keeps_speech_going_but_needs_start_threshold_to_begin_or_resume() -> None:
    ep = Endpointer(EndpointingConfig(end_silence_ms=320, short_pause_ms=None))
    # A probability between the thresholds never starts speech...
    assert feed(ep, windows(MAYBE, 640)) == []
    assert ep.state is EndpointState.IDLE
    # ...but keeps started speech going (windows 20-39 speech, 40-59 "maybe").
    events = feed(ep, windows(SPEECH, 640) + windows(MAYBE, 640), first_window=20)
    assert events == [SpeechStart(at_ms=768, speech_start_ms=640)]
    assert ep.state is EndpointState.SPEECH
    # After a real pause, "maybe" does not resume speech: the turn ends on time.
    events = feed(ep, windows(SILENT, 64) + windows(MAYBE, 320), first_window=60)
    assert events == [SpeechEnd(at_ms=1920 + 320, speech_start_ms=640, last_speech_ms=1920)]


def test_blip_shorter_than_onset_is_not_reported() -> None:
    ep = Endpointer()
    events = feed(ep, windows(SILENT, 320) + windows(SPEECH, 96) + windows(SILENT, 1280))
    assert events == []


def test_speech_shorter_than_min_speech_is_discarded_not_a_turn() -> None:
    ep = Endpointer(EndpointingConfig(min_speech_ms=250, end_silence_ms=320))
    events = feed(ep, windows(SILENT, 320) + windows(SPEECH, 224) + windows(SILENT, 640))
    assert events == [
        SpeechStart(at_ms=448, speech_start_ms=320),
        SpeechDiscarded(at_ms=544 + 320, speech_start_ms=320, last_speech_ms=544),
    ]


def test_lower_min_speech_for_a_yes_no_answer_makes_a_short_reply_a_turn() -> None:
    ep = Endpointer(EndpointingConfig(min_speech_ms=250, end_silence_ms=320, short_pause_ms=180))
    ep.set_min_speech_ms(96)
    assert ep.min_speech_ms == 96
    events = feed(ep, windows(SILENT, 320) + windows(SPEECH, 96) + windows(SILENT, 640))
    # The onset is capped at min_speech_ms, so the 96 ms reply also gets its SpeechStart.
    assert events == [
        SpeechStart(at_ms=416, speech_start_ms=320),
        ShortPause(at_ms=416 + 192, speech_start_ms=320, last_speech_ms=416),
        SpeechEnd(at_ms=416 + 320, speech_start_ms=320, last_speech_ms=416),
    ]
    ep.set_min_speech_ms(None)
    assert ep.min_speech_ms == 250


def test_pause_shorter_than_end_silence_gives_one_turn_and_one_short_pause_per_pause() -> None:
    ep = Endpointer(EndpointingConfig(end_silence_ms=512, short_pause_ms=192))
    sequence = (
        windows(SPEECH, 640)  # 0-640
        + windows(SILENT, 288)  # pause 1: short pause at 832
        + windows(SPEECH, 640)  # 928-1568
        + windows(SILENT, 96)  # pause 2: too short for a short pause
        + windows(SPEECH, 320)  # 1664-1984
        + windows(SILENT, 640)  # end: short pause at 2176, end at 2496
    )
    events = feed(ep, sequence)
    assert events == [
        SpeechStart(at_ms=128, speech_start_ms=0),
        ShortPause(at_ms=832, speech_start_ms=0, last_speech_ms=640),
        SpeechResumed(at_ms=960, speech_start_ms=0),  # pause 2 was never reported
        ShortPause(at_ms=2176, speech_start_ms=0, last_speech_ms=1984),
        SpeechEnd(at_ms=2496, speech_start_ms=0, last_speech_ms=1984),
    ]


def test_speech_after_a_reported_pause_is_announced_once_and_only_at_start_threshold() -> None:
    ep = Endpointer(EndpointingConfig(end_silence_ms=512, short_pause_ms=192))
    sequence = (
        windows(SPEECH, 640)  # 0-640
        + windows(SILENT, 256)  # short pause at 832
        + windows(MAYBE, 64)  # below start_threshold: still the pause
        + windows(SPEECH, 320)  # resumes with the window ending at 992
    )
    events = feed(ep, sequence)
    assert events == [
        SpeechStart(at_ms=128, speech_start_ms=0),
        ShortPause(at_ms=832, speech_start_ms=0, last_speech_ms=640),
        SpeechResumed(at_ms=992, speech_start_ms=0),
    ]


def test_no_short_pause_before_the_utterance_could_be_a_turn() -> None:
    ep = Endpointer(EndpointingConfig(min_speech_ms=320, end_silence_ms=512, short_pause_ms=192))
    events = feed(ep, windows(SPEECH, 160) + windows(SILENT, 256) + windows(SPEECH, 320))
    assert [type(e) for e in events] == [SpeechStart]
    events = feed(ep, windows(SILENT, 640), first_window=23)
    assert [type(e) for e in events] == [ShortPause, SpeechEnd]


def test_no_input_fires_once_at_the_deadline() -> None:
    ep = Endpointer(EndpointingConfig(no_input_ms=2000))
    ep.arm_no_input(now_ms=320)
    events = feed(ep, windows(SILENT, 4800))
    # The first window ending at or after 320 + 2000 ms is the one ending at 2336.
    assert events == [NoInput(at_ms=2336)]


def test_no_input_is_cancelled_by_a_turn_but_not_by_a_cough() -> None:
    config = EndpointingConfig(no_input_ms=1600, end_silence_ms=320)
    ep = Endpointer(config)
    ep.arm_no_input(now_ms=0)
    events = feed(ep, windows(SILENT, 320) + windows(SPEECH, 640) + windows(SILENT, 3200))
    assert [type(e) for e in events] == [SpeechStart, ShortPause, SpeechEnd]

    ep = Endpointer(config)
    ep.arm_no_input(now_ms=0)
    cough = windows(SPEECH, 160)
    events = feed(ep, windows(SILENT, 1440) + cough + windows(SILENT, 640))
    # Speech was under way at the deadline (1600); once it is discarded, NoInput follows.
    assert events == [
        SpeechStart(at_ms=1568, speech_start_ms=1440),
        SpeechDiscarded(at_ms=1600 + 320, speech_start_ms=1440, last_speech_ms=1600),
        NoInput(at_ms=1952),
    ]


def test_a_longer_wait_given_is_kept_when_rearmed_after_a_cough() -> None:
    """A caller given longer (they asked for a moment) keeps it: a noise too short to be a
    turn re-arms the timer with the wait it was given, not the usual one."""
    config = EndpointingConfig(no_input_ms=1000, end_silence_ms=320)
    before = windows(SILENT, 320) + windows(SPEECH, 160) + windows(SILENT, 640)
    for given, usual in ((3000, False), (None, True)):
        ep = Endpointer(config)
        ep.arm_no_input(now_ms=0, wait_ms=given)
        events = feed(ep, before)
        assert [type(e) for e in events][:2] == [SpeechStart, SpeechDiscarded]
        discarded = events[1].at_ms
        ep.rearm_no_input(discarded)
        later = feed(ep, windows(SILENT, 4000), first_window=len(before))
        assert [type(e) for e in later] == [NoInput]
        wait = later[0].at_ms - discarded
        assert (1000 <= wait < 1000 + W) if usual else (3000 <= wait < 3000 + W)


def test_disarmed_no_input_does_not_fire() -> None:
    ep = Endpointer(EndpointingConfig(no_input_ms=1000))
    ep.arm_no_input(now_ms=0)
    ep.disarm_no_input()
    assert feed(ep, windows(SILENT, 3200)) == []


def test_max_length_forces_the_end_and_continued_speech_starts_a_new_utterance() -> None:
    ep = Endpointer(EndpointingConfig(max_utterance_ms=2000))
    events = feed(ep, windows(SPEECH, 3200))
    # Window ending at 2016 is the first with 2000 ms of utterance.
    assert events == [
        SpeechStart(at_ms=128, speech_start_ms=0),
        MaxLength(at_ms=2016, speech_start_ms=0),
        SpeechEnd(at_ms=2016, speech_start_ms=0, last_speech_ms=2016),
        SpeechStart(at_ms=2016 + 128, speech_start_ms=2016),
    ]


def test_reset_returns_to_idle_and_forgets_timers() -> None:
    ep = Endpointer(EndpointingConfig(no_input_ms=1000))
    ep.arm_no_input(now_ms=0)
    feed(ep, windows(SPEECH, 320))
    assert ep.state is EndpointState.SPEECH
    ep.reset()
    assert ep.state is EndpointState.IDLE
    # The clock may start again from zero after a reset; no NoInput, no stale speech.
    assert feed(ep, windows(SILENT, 3200)) == []


def test_time_going_backwards_is_an_error() -> None:
    ep = Endpointer()
    ep.update(64, SILENT)
    with pytest.raises(ValueError, match="backwards"):
        ep.update(32, SILENT)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start_threshold": 0.3, "continue_threshold": 0.4}, "continue_threshold"),
        ({"end_silence_ms": 200, "short_pause_ms": 200}, "short_pause_ms"),
        ({"min_speech_ms": 5000, "max_utterance_ms": 4000}, "min_speech_ms"),
        ({"start_threshold": 1.5}, "start_threshold"),
    ],
)
def test_inconsistent_config_is_rejected(fields: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        EndpointingConfig(**fields)
