"""Four real calls keep their audio while the SIP port is flooded, and every call slot is
free again afterwards.

sipp places four calls to a real SIP endpoint (dispatcher and two pjsua workers, eight
slots); each caller's media is a Python RTP peer (tests/sipp/rtp_peer.py) that speaks a
fixture question over RTP while an echo handler sends the caller's audio back. Then a
separate process (tests/sipp/sip_flood.py) sends a bounded burst at the SIP port from
loopback: garbage and oversized datagrams, INVITEs that pjsua drops unanswered, half-open
TCP connections and TCP clients that never read. Checked: no gap over 200 ms in the bot's
RTP towards any caller from a second before the burst until a second after it, and once
Timer B (shortened to 2 s) has freed the slots the dropped INVITEs took and the four calls
have ended, eight fresh calls are answered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import itertools

from sipp.rtp_peer import RtpPeer
from sipp.sip_harness import clip, run_sipp

from telephony.config import SipSettings, TelephonySettings
from telephony.sip_endpoint import SipEndpoint
from telephony.sip_limits import SipLimits
from voicebot.frames import AudioFrame

FLOOD_SCRIPT = Path(__file__).parent / "sipp" / "sip_flood.py"
LIVE_CALLS = 4
MAX_CALLS = 8
FLOOD_S = 5.0
MAX_GAP_S = 0.2
LIMITS = SipLimits(
    timer_b_s=2.0, timer_h_s=2.0, linger_s=4.0, tcp_idle_s=2.0, tcp_message_s=2.0,
    tcp_max_write_buffer=64 * 1024,
)  # fmt: skip
QUESTION = "自動引き落としの申し込み方法を教えてください"


@contextlib.asynccontextmanager
async def echo_endpoint():
    """The endpoint; yields it and a queue of its calls, each put there once the caller's
    first RTP frame has reached the bot."""
    answered: asyncio.Queue = asyncio.Queue()

    async def echo(transport, caller, call_id):
        heard = False
        while (frame := await transport.receive()) is not None:
            if isinstance(frame, AudioFrame):
                if not heard:
                    heard = True
                    answered.put_nowait(transport)
                await transport.send(frame)

    settings = TelephonySettings(sip=SipSettings(port=0, max_calls=MAX_CALLS))
    endpoint = SipEndpoint(settings, echo, limits=LIMITS)
    await endpoint.start()
    try:
        yield endpoint, answered
    finally:
        await endpoint.stop()


async def place_calls(endpoint, answered, peers, tmp: Path, name: str):
    """sipp calls (one per peer) that stay up until the bot hangs up; returns the sipp
    task and the bot's transports once every call is up."""
    ports = tmp / f"{name}-rtp-ports.csv"
    ports.write_text("SEQUENTIAL\n" + "".join(f"{p.port};\n" for p in peers))
    sipp = asyncio.create_task(
        run_sipp(
            "uac_answer_many.xml",
            endpoint.port,
            tmp,
            calls=len(peers),
            extra=["-inf", str(ports)],
            timeout_s=90,
        )
    )
    transports = [await asyncio.wait_for(answered.get(), 60) for _ in peers]
    return sipp, transports


def max_gap(peer: RtpPeer, start: float, end: float) -> float:
    """The longest time between two of the bot's RTP packets arriving in [start, end]."""
    times = [t for t in peer.received_at if start <= t <= end]
    if len(times) < 2:
        return float("inf")
    return max(b - a for a, b in itertools.pairwise(times))


async def run_flood(port: int) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(FLOOD_SCRIPT), str(port), "--seconds", str(FLOOD_S),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), FLOOD_S + 30)
    assert proc.returncode == 0
    return json.loads(out)


def test_calls_keep_their_audio_through_a_flood_and_every_slot_is_free_afterwards(tmp_path):
    async def scenario():
        async with echo_endpoint() as (endpoint, answered):
            dispatcher = endpoint.dispatcher
            peers = [await RtpPeer.open() for _ in range(LIVE_CALLS)]
            fresh_peers: list[RtpPeer] = []
            try:
                sipp, calls = await place_calls(endpoint, answered, peers, tmp_path, "live")
                question = clip(QUESTION)
                for peer in peers:
                    peer._clips.put_nowait(question)  # the callers speak during the burst
                await asyncio.sleep(1.0)
                flood_start = time.monotonic()
                sent = await run_flood(endpoint.port)
                await asyncio.sleep(1.0)
                flood_end = time.monotonic()
                gaps = [max_gap(p, flood_start - 1.0, flood_end) for p in peers]
                slots_during = dispatcher.free_slots
                freed = False
                for _ in range(200):  # Timer B frees the dropped INVITEs' slots
                    if dispatcher.free_slots == MAX_CALLS - LIVE_CALLS:
                        freed = True
                        break
                    await asyncio.sleep(0.05)
                await asyncio.gather(*(call.hangup() for call in calls))
                live_run = await sipp
                for _ in range(100):
                    if dispatcher.free_slots == MAX_CALLS:
                        break
                    await asyncio.sleep(0.05)
                free_after = dispatcher.free_slots
                connections_after = dispatcher.connections_open
                fresh_peers = [await RtpPeer.open() for _ in range(MAX_CALLS)]
                fresh_sipp, fresh = await place_calls(
                    endpoint, answered, fresh_peers, tmp_path, "fresh"
                )
                await asyncio.gather(*(call.hangup() for call in fresh))
                fresh_run = await fresh_sipp
                return (
                    sent, gaps, slots_during, freed, live_run, free_after,
                    connections_after, len(fresh), fresh_run,
                )  # fmt: skip
            finally:
                for peer in peers + fresh_peers:
                    peer.close()

    sent, gaps, slots_during, freed, live_run, free_after, connections, fresh, fresh_run = (
        asyncio.run(scenario())
    )
    assert sent["sent"]["dropped_invites"] > MAX_CALLS and sent["sent"]["garbage"] > 1000, sent
    assert sent["sent"]["tcp_half_open"] > 8 and sent["sent"]["tcp_never_read"] >= 4, sent
    assert max(gaps) <= MAX_GAP_S, (gaps, sent)
    assert slots_during < MAX_CALLS - LIVE_CALLS, slots_during  # dropped INVITEs took slots
    assert freed
    assert live_run.returncode == 0, live_run.stdout + live_run.errors
    assert free_after == MAX_CALLS, free_after
    assert connections == 0, connections
    assert fresh == MAX_CALLS, fresh
    assert fresh_run.returncode == 0, fresh_run.stdout + fresh_run.errors
