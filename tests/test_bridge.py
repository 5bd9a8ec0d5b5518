"""Audio between a caller and staff after a transfer (telephony/bridge.py), on its own.

Both legs are the real recorded-call transport (``RecordedCaller``, the one behind
``voicebot call caller.wav``) on the wall clock: each plays a tone as its side's voice in
real time, keeps what it is sent, and hangs up a fixed time after its tone ends, so the
leg with the shorter tone hangs up first. A phone leg runs at 8 kHz, a browser leg at
16 kHz. tests/test_staff_console.py and tests/test_sip_staff_console.py run the bridge
inside the staff console over WebRTC and SIP.

Only the failing leg is made up: no real transport can be made to fail on demand, so
``FailingLeg`` raises from ``send`` after a few frames, as a broken connection would.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from telephony.bridge import AudioPump, bridge
from voicebot.clock import WallClock
from voicebot.frames import AudioFrame, DtmfFrame
from voicebot.recorded_call import HANG_UP_AFTER_MS, RecordedCaller
from voicebot.wavfile import WavAudio

CALLER_HZ = 700.0
STAFF_HZ = 1100.0


def tone(freq: float, seconds: float, rate: int) -> WavAudio:
    t = np.arange(round(seconds * rate)) / rate
    return WavAudio((6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16), rate)


class KeepingLeg(RecordedCaller):
    """The recorded-call transport, also keeping each frame it is sent whole (with its
    rate and timestamp) and how often it was hung up."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.frames_in: list[AudioFrame] = []
        self.hangups = 0

    async def send(self, frame: AudioFrame) -> None:
        self.frames_in.append(frame)
        await super().send(frame)

    async def hangup(self) -> None:
        self.hangups += 1
        await super().hangup()


class FailingLeg(KeepingLeg):
    """A leg whose connection breaks: ``send`` raises after ``ok_frames`` frames."""

    def __init__(self, *args, ok_frames: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ok_frames = ok_frames

    async def send(self, frame: AudioFrame) -> None:
        if len(self.frames_in) >= self.ok_frames:
            raise ConnectionResetError("the staff browser went away")
        await super().send(frame)


def leg(freq: float, seconds: float, rate: int, cls=KeepingLeg, **kwargs) -> KeepingLeg:
    return cls(tone(freq, seconds, rate), WallClock(), no_wait=True, **kwargs)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    signal = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(signal))
    spectrum[:5] = 0
    return float(np.argmax(spectrum) * rate / len(samples))


def heard(leg: KeepingLeg) -> np.ndarray:
    return np.concatenate([f.samples for f in leg.frames_in])


def test_each_side_hears_the_other_at_its_own_rate_in_20_ms_frames() -> None:
    """Phone caller (8 kHz) and browser staff (16 kHz): the caller's tone reaches staff
    resampled to 16 kHz and the staff's tone reaches the caller at 8 kHz, each cut into
    20 ms frames stamped from 0 on the receiving leg's clock."""
    caller = leg(CALLER_HZ, 0.5, 8000)
    staff = leg(STAFF_HZ, 0.5, 16000)

    ended_by = asyncio.run(bridge(caller, staff))

    assert ended_by in ("caller", "staff")  # equal tones: either may hang up first
    assert {len(f.samples) for f in staff.frames_in} == {320}
    assert {f.sample_rate for f in staff.frames_in} == {16000}
    assert {len(f.samples) for f in caller.frames_in} == {160}
    assert [f.timestamp_ms for f in staff.frames_in[:3]] == [0.0, 20.0, 40.0]
    assert [f.timestamp_ms for f in caller.frames_in[:3]] == [0.0, 20.0, 40.0]
    assert dominant_frequency(heard(staff)[:8000], 16000) == pytest.approx(CALLER_HZ, abs=10)
    assert dominant_frequency(heard(caller)[:4000], 8000) == pytest.approx(STAFF_HZ, abs=10)


def test_the_caller_hanging_up_hangs_up_the_staff_leg() -> None:
    caller = leg(CALLER_HZ, 0.3, 8000)
    staff = leg(STAFF_HZ, 30.0, 16000)

    ended_by = asyncio.run(bridge(caller, staff))

    assert ended_by == "caller"
    assert staff.hangups == 1 and caller.hangups == 0
    # Everything the caller said before hanging up reached staff: 0.3 s of tone and the
    # silence until the caller's hang-up, less what the resampler still held.
    said_ms = 300 + HANG_UP_AFTER_MS
    assert said_ms - 60 <= 20 * len(staff.frames_in) <= said_ms


def test_staff_hanging_up_hangs_up_the_caller() -> None:
    caller = leg(CALLER_HZ, 30.0, 8000)
    staff = leg(STAFF_HZ, 0.3, 16000)

    ended_by = asyncio.run(bridge(caller, staff))

    assert ended_by == "staff"
    assert caller.hangups == 1 and staff.hangups == 0


def test_a_leg_that_fails_counts_as_hung_up_and_both_legs_are_closed() -> None:
    caller = leg(CALLER_HZ, 30.0, 8000)
    staff = leg(STAFF_HZ, 30.0, 16000, cls=FailingLeg, ok_frames=10)

    asyncio.run(bridge(caller, staff))  # returns instead of raising

    assert len(staff.frames_in) == 10
    assert caller.hangups >= 1 and staff.hangups >= 1


def test_cancelling_the_bridge_hangs_up_both_legs() -> None:
    """The service stops while staff talk: the bridge task is cancelled, and neither
    side is left on a dead line."""
    caller = leg(CALLER_HZ, 30.0, 8000)
    staff = leg(STAFF_HZ, 30.0, 16000)

    async def scenario() -> bool:
        task = asyncio.create_task(bridge(caller, staff))
        while len(staff.frames_in) < 5:
            await asyncio.sleep(0.02)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(scenario())
    assert caller.hangups == 1 and staff.hangups == 1


def test_a_key_pressed_during_the_staff_call_is_not_passed_on() -> None:
    """Keys mean something to the bot, not to staff: the bridge drops them and goes on."""
    caller = leg(CALLER_HZ, 0.3, 8000, dtmf=[(100.0, "5")])
    staff = leg(STAFF_HZ, 30.0, 16000)

    assert asyncio.run(bridge(caller, staff)) == "caller"
    assert all(isinstance(f, AudioFrame) for f in staff.frames_in)
    assert len(staff.frames_in) >= 50  # audio went on after the key


def test_the_frame_read_before_the_bridge_started_goes_first() -> None:
    """The staff console hands over a caller frame the call loop had already read."""
    caller = leg(CALLER_HZ, 0.2, 8000)
    staff = leg(STAFF_HZ, 30.0, 8000)  # same rate: frames pass unchanged
    first = AudioFrame.from_samples(np.full(160, 1234, dtype=np.int16), 8000, 0.0)

    asyncio.run(bridge(caller, staff, first))

    assert np.array_equal(staff.frames_in[0].samples, first.samples)
    assert not np.array_equal(staff.frames_in[1].samples, first.samples)


def test_the_pump_recuts_frames_of_any_length_into_20_ms() -> None:
    """30 ms frames in, 20 ms frames out; the half frame left waits for the next one."""
    source = leg(CALLER_HZ, 1.0, 8000)
    sink = leg(STAFF_HZ, 1.0, 8000)
    pump = AudioPump(source, sink)
    ramp = np.arange(480, dtype=np.int16)

    async def feed() -> list[int]:
        sent = []
        for chunk in (ramp[:240], ramp[240:]):
            await pump.forward(AudioFrame.from_samples(chunk, 8000))
            sent.append(pump.frames)
        await pump.forward(DtmfFrame("1"))
        sent.append(pump.frames)
        return sent

    assert asyncio.run(feed()) == [1, 3, 3]
    assert np.array_equal(heard(sink), ramp)
    assert [f.timestamp_ms for f in sink.frames_in] == [0.0, 20.0, 40.0]
