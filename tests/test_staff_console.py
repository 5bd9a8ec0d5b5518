"""The staff console with real WebRTC legs (aiortc peers on this host), no browser.

The caller's leg is a WebRtcTransport (at 8 kHz in one test, as a SIP call would be, so
that the bridge resamples); the staff leg is made by the console from a staff peer's
offer. Tones tell the directions apart: caller 700 Hz, staff 1100 Hz, ringback 400 Hz.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from webrtc_client import BrowserLikePeer, dominant_frequency, rms, wait_for

from privacy.masking import PHONE
from telephony.staff_console import (
    AlreadyAnswered,
    ConsoleCall,
    ConsoleCallGone,
    RingbackTone,
    StaffConsole,
    screen_pop,
)
from telephony.webrtc import SignallingError, WebRtcTransport
from voicebot.dialogue import Handover
from voicebot.transport import TransferError
from voicebot.turn import Turn

ROOT = Path(__file__).resolve().parent.parent
HANDOVER = Handover(
    reason="caller_request",
    topic="納付書の再発行",
    turns=[
        Turn(
            heard="納付書をなくしました。電話番号は090-1234-5678です",
            faq_id="payment.lost-notice",
            score=0.91,
            action="answer",
            candidates=[
                {"faq_id": "payment.lost-notice", "title": "納付書の再発行", "score": 0.91}
            ],
        ),
        Turn(heard="担当の方と話したいです", faq_id=None, score=1.0, action="transfer"),
    ],
)


class Bus:
    """Collects what the console publishes for the live monitor (EventBus.publish_dict)."""

    def __init__(self) -> None:
        self.published: list[dict] = []

    def publish_dict(self, d: dict) -> None:
        self.published.append(d)


async def caller_leg(peer: BrowserLikePeer, console: StaffConsole, rate: int) -> WebRtcTransport:
    holder: list[WebRtcTransport] = []

    async def answer(sdp: str, kind: str) -> tuple[str, str]:
        transport, desc = await WebRtcTransport.answer(
            sdp, kind, call_id="c1", staff_console=console, sample_rate=rate
        )
        holder.append(transport)
        return desc.sdp, desc.type

    await peer.call(answer)
    await asyncio.wait_for(peer.channel_open.wait(), 10)
    peer.send({"type": "ready"})
    return holder[0]


async def keep_receiving_until_ringing(transport, console, call_id="c1"):
    """The call loop is blocked in transfer() while it rings; here offer() reads itself."""
    await wait_for(lambda: any(c["call_id"] == call_id for c in console.calls()))


@pytest.mark.asyncio
@pytest.mark.parametrize("caller_rate", [8000, 16000])
async def test_staff_answers_and_audio_flows_both_ways(caller_rate):
    bus = Bus()
    console = StaffConsole(bus=bus)
    caller = BrowserLikePeer(freq=700.0)
    transport = await caller_leg(caller, console, caller_rate)
    events = []

    async def watch():
        async for event in console.subscribe():
            events.append(event)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    ringing = asyncio.create_task(transport.transfer(HANDOVER))
    await keep_receiving_until_ringing(transport, console)
    [listed] = console.calls()
    assert listed["state"] == "ringing"
    # The screen pop: reason, topic, what was heard (masked) and how it was understood.
    summary = listed["summary"]
    assert summary["reason"] == "caller_request"
    assert summary["topic"] == "納付書の再発行"
    assert "090-1234-5678" not in summary["turns"][0]["heard"]
    assert summary["turns"][0]["candidates"][0]["title"] == "納付書の再発行"

    # While it rings the caller hears the ringback tone, not silence.
    await wait_for(lambda: rms(caller.heard_audio()[-48000:]) > 500, timeout=15)
    ring = caller.heard_audio()[-48000:]
    assert dominant_frequency(ring, 48000) == pytest.approx(400, abs=30)

    staff = BrowserLikePeer(freq=1100.0, control=False)

    async def answer(sdp, kind):
        desc = await console.answer("c1", sdp, kind, staff_user="tanaka")
        return desc.sdp, desc.type

    await staff.call(answer)
    await asyncio.wait_for(ringing, 10)  # offer() returned: the bot is out of the call
    assert console.calls()[0]["state"] == "connected"
    assert console.calls()[0]["answered_by"] == "tanaka"

    # A second staff member is too late.
    late = BrowserLikePeer(control=False)
    with pytest.raises(AlreadyAnswered):
        await late.call(lambda sdp, kind: console.answer("c1", sdp, kind, "suzuki"))
    await late.close()

    # Caller's 700 Hz reaches staff, staff's 1100 Hz reaches the caller.
    mark = len(caller.heard)
    await wait_for(lambda: rms(staff.heard_audio()[-24000:]) > 1000, timeout=15)
    await wait_for(lambda: len(caller.heard) - mark > 100, timeout=15)
    to_staff = staff.heard_audio()[-24000:]
    assert dominant_frequency(to_staff, 48000) == pytest.approx(700, abs=25)
    await wait_for(
        lambda: abs(dominant_frequency(caller.heard_audio()[-24000:], 48000) - 1100) < 25,
        timeout=15,
    )
    assert rms(caller.heard_audio()[-24000:]) > 1000

    # 終話 from the console ends both legs; the caller's page is told.
    await console.hangup("c1")
    assert transport.ended
    await wait_for(lambda: any(m["type"] == "hangup" for m in caller.messages))
    await wait_for(lambda: not console.calls())
    kinds = [e["event"] for e in events]
    assert kinds == ["staff_ringing", "staff_connected", "staff_ended"]
    assert events[-1]["ended_by"] == "staff"
    assert [e["event"] for e in bus.published] == kinds
    watcher.cancel()
    await caller.close()
    await staff.close()


@pytest.mark.asyncio
async def test_caller_hanging_up_ends_the_staff_leg():
    console = StaffConsole()
    caller = BrowserLikePeer(freq=700.0)
    transport = await caller_leg(caller, console, 16000)
    ringing = asyncio.create_task(console.offer(transport, HANDOVER, "c1", 30))
    await keep_receiving_until_ringing(transport, console)
    staff = BrowserLikePeer(freq=1100.0, control=False)
    legs = []

    async def answer(sdp, kind):
        desc = await console.answer("c1", sdp, kind, staff_user="tanaka")
        legs.append(console._calls["c1"])
        return desc.sdp, desc.type

    await staff.call(answer)
    await asyncio.wait_for(ringing, 10)
    await wait_for(lambda: rms(staff.heard_audio()[-9600:]) > 1000, timeout=15)
    caller.send({"type": "hangup"})
    await wait_for(lambda: not console.calls(), timeout=15)
    assert legs[0].staff_leg.ended
    await caller.close()
    await staff.close()


@pytest.mark.asyncio
async def test_nobody_answers_in_time():
    bus = Bus()
    console = StaffConsole(bus=bus)
    caller = BrowserLikePeer(freq=700.0)
    transport = await caller_leg(caller, console, 16000)
    with pytest.raises(TransferError, match="no staff answered"):
        await console.offer(transport, HANDOVER, "c1", timeout_s=1.0)
    assert console.calls() == []
    assert [e["event"] for e in bus.published] == ["staff_ringing", "staff_missed"]
    assert not transport.ended  # the bot keeps the caller
    # Too late to answer now.
    late = BrowserLikePeer(control=False)
    with pytest.raises(ConsoleCallGone):
        await late.call(lambda sdp, kind: console.answer("c1", sdp, kind, "tanaka"))
    await late.close()
    await transport.hangup()
    await caller.close()


@pytest.mark.asyncio
async def test_caller_hangs_up_while_ringing():
    bus = Bus()
    console = StaffConsole(bus=bus)
    caller = BrowserLikePeer(freq=700.0)
    transport = await caller_leg(caller, console, 16000)
    ringing = asyncio.create_task(console.offer(transport, HANDOVER, "c1", 30))
    await keep_receiving_until_ringing(transport, console)
    await caller.close()
    with pytest.raises(TransferError, match="hung up"):
        await asyncio.wait_for(ringing, 20)
    assert console.calls() == []
    assert bus.published[-1]["event"] == "staff_abandoned"


@pytest.mark.asyncio
async def test_bad_staff_offer_keeps_the_call_ringing():
    console = StaffConsole()
    caller = BrowserLikePeer(freq=700.0)
    transport = await caller_leg(caller, console, 16000)
    ringing = asyncio.create_task(console.offer(transport, HANDOVER, "c1", 30))
    await keep_receiving_until_ringing(transport, console)
    with pytest.raises(SignallingError):
        await console.answer("c1", "not sdp", "offer", "tanaka")
    assert console.calls()[0]["state"] == "ringing"
    with pytest.raises(ConsoleCallGone):
        await console.answer("nope", "v=0", "offer", "tanaka")
    ringing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ringing
    assert console.calls() == []
    await transport.hangup()
    await caller.close()


def test_ringback_is_the_japanese_pattern():
    tone = RingbackTone(8000).next_frame(8000 * 3)
    assert rms(tone[:8000]) > 1000  # 1 s on
    assert not tone[8000:].any()  # 2 s off
    assert dominant_frequency(tone[:8000], 8000) == pytest.approx(400, abs=20)


def test_screen_pop_without_handover():
    assert screen_pop(None) == {"reason": "unknown", "topic": None, "turns": []}


def test_screen_pop_masks_a_number_read_out_over_two_turns_with_fillers():
    handover = Handover(
        reason="caller_request",
        topic=None,
        turns=[
            Turn(heard="電話番号は090、えーと", faq_id=None, score=0.0, action="reprompt"),
            Turn(heard="1234えっと5678です", faq_id=None, score=0.0, action="transfer"),
        ],
    )
    heard = [t["heard"] for t in screen_pop(handover)["turns"]]
    assert heard == [f"電話番号は{PHONE}、えーと", f"{PHONE}です"]


def test_the_console_does_not_load_without_the_masking():
    """Staff must never see unmasked words: without the masking the console fails to
    import instead of showing the caller's words as they were heard."""
    code = (
        "import sys\n"
        "sys.modules['privacy.masking'] = None\n"  # as if the module were missing
        "try:\n"
        "    import telephony.staff_console\n"
        "except ImportError as exc:\n"
        "    print('refused:', exc)\n"
        "else:\n"
        "    print('loaded')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.stdout.startswith("refused:"), done.stdout + done.stderr


async def connected_call(console: StaffConsole, call_id: str = "c1"):
    """A caller (700 Hz) bridged to a staff peer (1100 Hz) through ``console``."""
    caller = BrowserLikePeer(freq=700.0)
    transport = await caller_leg(caller, console, 16000)
    ringing = asyncio.create_task(console.offer(transport, HANDOVER, call_id, 30))
    await keep_receiving_until_ringing(transport, console, call_id)
    staff = BrowserLikePeer(freq=1100.0, control=False)

    async def answer(sdp, kind):
        desc = await console.answer(call_id, sdp, kind, staff_user="tanaka")
        return desc.sdp, desc.type

    await staff.call(answer)
    await asyncio.wait_for(ringing, 10)
    await wait_for(lambda: rms(staff.heard_audio()[-9600:]) > 1000, timeout=15)
    return caller, transport, staff


@pytest.mark.asyncio
async def test_shutdown_lets_staff_finish_then_ends_the_call():
    """drain(): staff are warned and may finish; what is left after the grace is closed."""
    bus = Bus()
    console = StaffConsole(bus=bus)
    caller, transport, staff = await connected_call(console)
    draining = asyncio.create_task(console.drain(grace_s=60))
    await wait_for(lambda: bus.published[-1]["event"] == "staff_draining")
    assert bus.published[-1]["grace_s"] == 60
    assert not transport.ended  # the conversation goes on during the grace period
    await console.hangup("c1")  # staff say goodbye and hang up
    await asyncio.wait_for(draining, 10)  # drain ends with the last conversation
    assert transport.ended
    await caller.close()
    await staff.close()

    caller, transport, staff = await connected_call(console)
    await asyncio.wait_for(console.drain(grace_s=0.5), 15)  # nobody hangs up: closed
    assert transport.ended and console.calls() == []
    await wait_for(lambda: any(m["type"] == "hangup" for m in caller.messages))
    await caller.close()
    await staff.close()


@pytest.mark.asyncio
async def test_closing_the_console_ends_every_pages_stream_after_its_news():
    """A page's stream ends when the console closes (a waiting stream would hold the web
    server's shutdown), after the events it was already sent; one opened after that
    ends at once."""
    console = StaffConsole()
    pages = [console.subscribe(), console.subscribe()]
    call = ConsoleCall(call_id="c9", summary={}, transport="sip", timeout_s=5.0)
    console._publish("staff_ringing", call)
    await console.close()
    for page in pages:
        received = [event["event"] async for event in page]
        assert received == ["staff_ringing"]
    late = console.subscribe()  # a page that reconnects during the shutdown
    assert [event async for event in late] == []


@pytest.mark.asyncio
async def test_only_the_staff_member_who_answered_or_an_admin_ends_the_call():
    """終話 with who pressed it (as relayed from a web node): a colleague is refused, the
    one who answered ends it."""
    console = StaffConsole()
    caller, transport, staff = await connected_call(console)
    with pytest.raises(PermissionError):
        await console.hangup("c1", staff_user="suzuki", admin=False)
    assert not transport.ended and console.calls()[0]["state"] == "connected"
    await console.hangup("c1", staff_user="tanaka", admin=False)
    await wait_for(lambda: transport.ended)
    assert console.calls() == []
    await caller.close()
    await staff.close()
