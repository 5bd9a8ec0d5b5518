"""A SIP call's clock never stops: silence stands in when the worker delivers no caller audio.

The leg here is a stand-in that records what the bot plays: the transport's clock is what is
under test, and a real pjsua worker cannot be made to stop delivering frames on demand (its
conference bridge ticks every 20 ms, RTP or not). Real legs are exercised in
tests/test_sip_worker_link.py and tests/test_sip_endpoint.py.
"""

from __future__ import annotations

import asyncio
import itertools

from telephony.config import TransferSettings
from telephony.sip_call import GAP_FILL_MS, QUIET_PEAK, SipCallTransport
from voicebot.frames import AudioFrame, DtmfFrame

FRAME = b"\x00\x10" * 160  # 20 ms of 8 kHz audio, loud enough to be speech
QUIET = b"\x03\x00" * 160  # 20 ms of line noise


class RecordingLeg:
    """Stand-in for a worker leg: keeps what the bot played."""

    def __init__(self) -> None:
        self.events = None
        self.failure: str | None = None  # set by the worker link when the worker died
        self.played: list[bytes] = []

    def play(self, pcm: bytes) -> None:
        self.played.append(pcm)


def transport() -> SipCallTransport:
    return SipCallTransport(RecordingLeg(), "call-1", None, TransferSettings())


def test_before_media_flows_receive_waits_for_the_first_frame():
    async def scenario() -> bool:
        call = transport()
        task = asyncio.ensure_future(call.receive())
        await asyncio.sleep(3 * GAP_FILL_MS / 1000)
        waiting = not task.done()
        call.pcm_received(FRAME)
        frame = await task
        return waiting and isinstance(frame, AudioFrame) and frame.pcm == FRAME

    assert asyncio.run(scenario())


def test_a_gap_in_caller_audio_is_filled_with_silence_on_the_same_timeline():
    async def scenario() -> list[AudioFrame | DtmfFrame | None]:
        call = transport()
        for _ in range(3):
            call.pcm_received(FRAME)
        got = [await call.receive() for _ in range(3)]
        # Nothing more arrives: the clock goes on with silent frames.
        got += [await asyncio.wait_for(call.receive(), 2.0) for _ in range(GAP_FILL_MS // 20)]
        call.pcm_received(FRAME)  # the caller's audio is back
        got.append(await call.receive())
        assert call.frames_filled == GAP_FILL_MS // 20
        return got

    frames = asyncio.run(scenario())
    assert all(isinstance(f, AudioFrame) for f in frames)
    stamps = [f.timestamp_ms for f in frames]
    assert [b - a for a, b in itertools.pairwise(stamps)] == [20.0] * (len(stamps) - 1)
    filled = frames[3:-1]
    assert all(f.pcm == bytes(320) for f in filled)
    assert frames[-1].pcm == FRAME


def test_keys_and_hang_ups_still_come_through_after_a_gap():
    async def scenario() -> tuple[object, object]:
        call = transport()
        call.pcm_received(FRAME)
        await call.receive()
        call.dtmf_received("5")
        key = await call.receive()
        for _ in range(GAP_FILL_MS // 20):  # a gap, filled
            await asyncio.wait_for(call.receive(), 2.0)
        call.disconnected(200, "BYE")
        return key, await call.receive()

    key, end = asyncio.run(scenario())
    assert key == DtmfFrame("5")
    assert end is None


def test_quiet_frames_arriving_late_give_the_filled_time_back():
    """After a stall the caller's frames arrive late: the quiet ones (as many as were
    filled) are dropped so that the timeline is not left ahead; speech is always kept."""

    async def scenario() -> tuple[list[AudioFrame], SipCallTransport]:
        call = transport()
        call.pcm_received(FRAME)
        got = [await call.receive()]
        filled = GAP_FILL_MS // 20
        got += [await asyncio.wait_for(call.receive(), 2.0) for _ in range(filled)]
        # The late frames of the stall arrive together: quiet, one with speech, quiet.
        late = [QUIET] * 3 + [FRAME] + [QUIET] * (filled + 2)
        for pcm in late:
            call.pcm_received(pcm)
        while not call._inbound.empty():
            got.append(await call.receive())
        return got, call

    frames, call = asyncio.run(scenario())
    filled = GAP_FILL_MS // 20
    assert call.frames_skipped == filled  # all the filled time given back, no more
    kept = frames[1 + filled :]
    # Speech is never dropped; the quiet frames beyond the filled time are kept.
    assert [f.pcm for f in kept] == [FRAME] + [QUIET] * (3 + filled + 2 - filled)
    stamps = [f.timestamp_ms for f in frames]
    assert [b - a for a, b in itertools.pairwise(stamps)] == [20.0] * (len(stamps) - 1)
    assert int.from_bytes(QUIET[:2], "little") < QUIET_PEAK <= int.from_bytes(FRAME[:2], "little")
