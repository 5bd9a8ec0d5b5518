"""The WebRTC endpoint against real aiortc peers on this host: calls start, run on the
switchboard, end, and are refused (per owner, in all, while stopping, bad offers) without
leaving anything behind.

The switchboard here is a small stand-in that plays a tone and ends the call (or keeps it,
or hands it over): the endpoint's own job is under test, and the real switchboard with the
bot is exercised end to end by the browser tests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest
from webrtc_client import BrowserLikePeer, dominant_frequency, rms, wait_for

from telephony.config import TelephonySettings
from telephony.webrtc_endpoint import CallRefused, Refusal, WebRtcEndpoint
from voicebot.frames import AudioFrame


@dataclass
class Result:
    outcome: str


class ToneSwitchboard:
    """Answers each call with half a second of a 900 Hz tone, then ends it as told."""

    def __init__(self, outcome: str = "completed", hold: bool = False) -> None:
        self.accepting = True
        self.outcome = outcome
        self.hold = hold
        self.handled: list[tuple[str, str]] = []
        self._ids = 0

    def new_call_id(self) -> str:
        self._ids += 1
        return f"w{self._ids}"

    async def handle(self, transport, caller: str, call_id: str) -> Result:
        self.handled.append((call_id, caller))
        t = np.arange(8000) / 16000
        tone = np.rint(6000 * np.sin(2 * np.pi * 900 * t)).astype(np.int16)
        for i in range(25):
            if await transport.receive() is None:
                return Result("hung_up")
            await transport.send(AudioFrame.from_samples(tone[i * 320 : (i + 1) * 320], 16000))
        while self.hold and await transport.receive() is not None:
            pass
        return Result(self.outcome)


def endpoint(switchboard, max_calls: int = 2) -> WebRtcEndpoint:
    settings = TelephonySettings()
    settings.webrtc.ice_servers = []
    return WebRtcEndpoint(settings, switchboard, max_calls=max_calls)


async def call(ep: WebRtcEndpoint, peer: BrowserLikePeer, owner: str) -> str:
    ids: list[str] = []

    async def answer(sdp: str, kind: str) -> tuple[str, str]:
        call_id, desc = await ep.accept(sdp, kind, owner=owner, caller=f"browser:{owner}")
        ids.append(call_id)
        return desc.sdp, desc.type

    await peer.call(answer)
    return ids[0]


@pytest.mark.asyncio
async def test_a_call_runs_on_the_switchboard_and_is_gone_when_it_ends():
    switchboard = ToneSwitchboard()
    ep = endpoint(switchboard)
    peer = BrowserLikePeer(freq=500.0)
    call_id = await call(ep, peer, "operator")
    assert switchboard.handled == [(call_id, "browser:operator")]
    await asyncio.wait_for(peer.channel_open.wait(), 10)
    peer.send({"type": "ready"})
    # The switchboard's tone reaches the peer; the call ends and the endpoint closes the
    # line (the page is told) and forgets the call.
    await wait_for(lambda: any(m["type"] == "hangup" for m in peer.messages), timeout=15)
    await wait_for(lambda: not ep.calls)
    heard = peer.heard_audio()
    assert rms(heard) > 500
    assert dominant_frequency(heard[np.abs(heard) > 0], 48000) == pytest.approx(900, abs=25)
    await peer.close()


@pytest.mark.asyncio
async def test_calls_are_capped_per_owner_and_in_all():
    switchboard = ToneSwitchboard(hold=True)
    ep = endpoint(switchboard, max_calls=2)
    peers = [BrowserLikePeer() for _ in range(4)]
    first = await call(ep, peers[0], "alice")
    with pytest.raises(CallRefused) as refused:
        await call(ep, peers[1], "alice")
    assert refused.value.reason is Refusal.OWNER_BUSY
    second = await call(ep, peers[1], "bob")
    with pytest.raises(CallRefused) as refused:
        await call(ep, peers[2], "carol")
    assert refused.value.reason is Refusal.FULL
    assert set(ep.calls) == {first, second}
    # Hanging up one call makes room for another.
    await ep.hang_up(first)
    await wait_for(lambda: first not in ep.calls)
    third = await call(ep, peers[3], "carol")
    assert ep.call(third).owner == "carol"
    for call_id in list(ep.calls):
        await ep.hang_up(call_id)
    await wait_for(lambda: not ep.calls)
    for peer in peers:
        await peer.close()


@pytest.mark.asyncio
async def test_refused_while_stopping_unavailable_or_offered_garbage():
    switchboard = ToneSwitchboard()
    ep = endpoint(switchboard)
    switchboard.accepting = False
    with pytest.raises(CallRefused) as refused:
        await ep.accept("v=0\r\n", "offer", owner="a", caller="browser:a")
    assert refused.value.reason is Refusal.STOPPING
    switchboard.accepting = True
    with pytest.raises(CallRefused) as refused:
        await ep.accept("hello", "offer", owner="a", caller="browser:a")
    assert refused.value.reason is Refusal.BAD_OFFER and refused.value.detail
    assert ep.calls == {}  # the place it held while answering is given back
    no_bot = endpoint(None)
    assert not no_bot.available
    with pytest.raises(CallRefused) as refused:
        await no_bot.accept("v=0\r\n", "offer", owner="a", caller="browser:a")
    assert refused.value.reason is Refusal.UNAVAILABLE
    switched_off = endpoint(switchboard)
    switched_off.settings.webrtc.enabled = False
    assert not switched_off.available


@pytest.mark.asyncio
async def test_a_transferred_call_is_left_to_the_staff_bridge():
    ep = endpoint(ToneSwitchboard(outcome="transferred"))
    peer = BrowserLikePeer()
    call_id = await call(ep, peer, "operator")
    task = ep.calls[call_id].task
    await asyncio.wait_for(task, 15)
    # The endpoint did not close the line: after a transfer it belongs to staff.
    assert not any(m.get("type") == "hangup" for m in peer.messages)
    assert call_id in ep.calls
    await ep.hang_up(call_id)
    await wait_for(lambda: not ep.calls)
    await peer.close()
