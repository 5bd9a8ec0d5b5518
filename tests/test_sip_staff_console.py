"""A SIP caller transferred to the browser staff console ("console" transfer target).

The caller is sipp + the Python RTP peer; the staff member is an aiortc peer on this host
acting as the console page's WebRTC leg (tests/webrtc_client.py), answering through the
real ``StaffConsole``. Tones tell the directions apart: caller 700 Hz, staff 1100 Hz,
ringback 400 Hz.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sipp.rtp_peer import RtpPeer
from sipp.sip_harness import run_sipp, shared_bot, sip_bot
from webrtc_client import BrowserLikePeer, dominant_frequency, rms, wait_for

from telephony.staff_console import StaffConsole
from voicebot.events import TransferAnswered


@pytest.fixture(scope="module")
def bot():
    return shared_bot()


def tone(freq: float, seconds: float, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_sip_caller_reaches_staff_console_and_staff_hangs_up(bot, tmp_path):
    """Key 0 → transfer notice → the console rings (the SIP caller hears the 400 Hz
    ringback over RTP, the screen pop has the handover) → staff answer → the caller's
    700 Hz reaches staff and staff's 1100 Hz reaches the caller's RTP → staff end the call
    (終話) → the bot's endpoint sends BYE to the caller. Outcome "transferred"."""
    console = StaffConsole()

    async def scenario():
        async with sip_bot(bot, transfer_targets=["console"], staff_console=console) as sut:
            peer = await RtpPeer.open()
            staff = BrowserLikePeer(freq=1100.0, control=False)
            try:
                sipp = asyncio.create_task(
                    run_sipp(
                        "uac_answer.xml", sut.port, tmp_path, keys={"rtp_port": str(peer.port)}
                    )
                )
                await peer.wait_for_bot()
                await peer.wait_for_bot_speech()
                await peer.press("0")
                await wait_for(lambda: bool(console.calls()), timeout=60)
                [ringing] = console.calls()
                mark = len(peer.received)
                await wait_for(lambda: len(peer.received) - mark > 150, timeout=15)
                ringback = np.concatenate(peer.received[mark:])

                async def answer(sdp, kind):
                    desc = await console.answer(ringing["call_id"], sdp, kind, "tanaka")
                    return desc.sdp, desc.type

                await staff.call(answer)
                await wait_for(lambda: console.calls()[0]["state"] == "connected", timeout=15)
                talking = asyncio.create_task(peer.say(tone(700.0, 4.0)))
                await wait_for(lambda: rms(staff.heard_audio()[-24000:]) > 500, timeout=15)
                to_staff = staff.heard_audio()[-24000:]
                mark = len(peer.received)
                await wait_for(lambda: len(peer.received) - mark > 50, timeout=15)
                to_caller = np.concatenate(peer.received[-50:])
                await talking
                await console.hangup(ringing["call_id"])
                run = await sipp
            finally:
                peer.close()
                await staff.close()
            return sut, run, ringing, ringback, to_staff, to_caller

    sut, run, ringing, ringback, to_staff, to_caller = asyncio.run(scenario())
    assert run.returncode == 0, run.stdout + run.errors  # the caller got BYE
    assert ringing["summary"]["reason"] == "caller_request"
    assert dominant_frequency(ringback, 8000) == pytest.approx(400, abs=30)
    assert dominant_frequency(to_staff, 48000) == pytest.approx(700, abs=25)
    assert dominant_frequency(to_caller, 8000) == pytest.approx(1100, abs=30)
    assert len(sut.events.of_type(TransferAnswered)) == 1
    assert [r.outcome for r in sut.results] == ["transferred"]
    assert sut.endpoint.transports == {}
