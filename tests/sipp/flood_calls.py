"""Live calls through a SIP flood: the scenario shared by tests/test_sip_flood.py and
bench/sip_flood.py.

A real SIP endpoint (dispatcher and pjsua workers) answers with an echo handler; sipp
places ``live_calls`` calls whose media are Python RTP peers (tests/sipp/rtp_peer.py) that
speak a fixture question over RTP. A separate process (tests/sipp/sip_flood.py) then sends
a bounded burst at the SIP port from loopback. Measured: the longest gap between two of
the bot's RTP packets at each caller from a second before the burst to a second after it,
the slots free once the deadlines have run and the calls have ended, and whether
``max_calls`` fresh calls are then answered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import time
from pathlib import Path

from sipp.rtp_peer import RtpPeer
from sipp.sip_harness import clip, run_sipp

from telephony.config import SipSettings, TelephonySettings
from telephony.sip_endpoint import SipEndpoint
from telephony.sip_limits import SipLimits
from voicebot.frames import AudioFrame

FLOOD_SCRIPT = Path(__file__).parent / "sip_flood.py"
QUESTION = "自動引き落としの申し込み方法を教えてください"


@contextlib.asynccontextmanager
async def echo_endpoint(max_calls: int, limits: SipLimits):
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

    settings = TelephonySettings(sip=SipSettings(port=0, max_calls=max_calls))
    endpoint = SipEndpoint(settings, echo, limits=limits)
    await endpoint.start()
    try:
        yield endpoint, answered
    finally:
        await endpoint.stop()


async def place_calls(endpoint, answered, peers: list[RtpPeer], tmp: Path, name: str):
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


async def run_flood(port: int, seconds: float) -> dict:
    """The flood process's report (what it sent, per kind)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(FLOOD_SCRIPT),
        str(port),
        "--seconds",
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"the flood process failed ({proc.returncode})")
    return json.loads(out)


async def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


async def calls_through_flood(
    tmp: Path, *, live_calls: int, max_calls: int, flood_s: float, limits: SipLimits
) -> dict:
    """Run the whole scenario; returns what was measured."""
    async with echo_endpoint(max_calls, limits) as (endpoint, answered):
        dispatcher = endpoint.dispatcher
        peers = [await RtpPeer.open() for _ in range(live_calls)]
        fresh_peers: list[RtpPeer] = []
        try:
            sipp, calls = await place_calls(endpoint, answered, peers, tmp, "live")
            question = clip(QUESTION)
            for peer in peers:
                peer._clips.put_nowait(question)  # the callers speak during the burst
            await asyncio.sleep(1.0)
            flood_start = time.monotonic()
            sent = await run_flood(endpoint.port, flood_s)
            await asyncio.sleep(1.0)
            flood_end = time.monotonic()
            gaps = [max_gap(p, flood_start - 1.0, flood_end) for p in peers]
            slots_free_after_flood = dispatcher.free_slots
            freed_by_timer_b = await wait_for(
                lambda: dispatcher.free_slots == max_calls - live_calls, limits.timer_b_s + 8
            )
            await asyncio.gather(*(call.hangup() for call in calls))
            live_run = await sipp
            await wait_for(lambda: dispatcher.free_slots == max_calls, 5)
            slots_free_after_calls = dispatcher.free_slots
            connections_after = dispatcher.connections_open
            fresh_peers = [await RtpPeer.open() for _ in range(max_calls)]
            fresh_sipp, fresh = await place_calls(endpoint, answered, fresh_peers, tmp, "fresh")
            await asyncio.gather(*(call.hangup() for call in fresh))
            fresh_run = await fresh_sipp
        finally:
            for peer in peers + fresh_peers:
                peer.close()
    return {
        "flood": sent,
        "max_rtp_gap_ms": [round(g * 1000, 1) for g in gaps],
        "slots_free_right_after_flood": slots_free_after_flood,
        "dropped_invite_slots_freed_by_timer_b": freed_by_timer_b,
        "live_calls_sipp_ok": live_run.returncode == 0,
        "live_calls_sipp_log": "" if live_run.returncode == 0 else live_run.stdout[-2000:],
        "slots_free_after_calls": slots_free_after_calls,
        "tcp_connections_left": connections_after,
        "fresh_calls_answered": len(fresh),
        "fresh_calls_sipp_ok": fresh_run.returncode == 0,
    }
