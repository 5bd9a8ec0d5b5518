"""Live SIP calls through a flood of hostile SIP traffic: audio gaps and call slots after.

A real SIP endpoint (dispatcher and pjsua workers, an echo handler) takes ``--calls`` sipp
calls whose callers speak over RTP; a separate process then sends a bounded burst at the
SIP port from loopback for ``--seconds``: garbage and oversized datagrams, INVITEs that
pjsua drops unanswered, half-open TCP connections, TCP clients that never read
(tests/sipp/sip_flood.py). Printed as JSON: the rate sent per kind of traffic, the longest
gap in the bot's RTP towards each live caller, the call slots free afterwards (and whether
``--max-calls`` fresh calls are answered at once), and the CPU.

    python bench/sip_flood.py                       # 4 live calls, 8 slots, 5 s burst
    python bench/sip_flood.py --seconds 10 --timer-b 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sipp.flood_calls import calls_through_flood  # noqa: E402

from telephony.sip_limits import SipLimits  # noqa: E402


def cpu_description() -> dict:
    """The CPU model, core count and whether AVX-512 / AMX are present (Linux /proc)."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "amx": any(f.startswith("amx") for f in flags),
    }


async def main(args: argparse.Namespace) -> dict:
    limits = SipLimits(
        timer_b_s=args.timer_b,
        timer_h_s=args.timer_b,
        linger_s=2 * args.timer_b,
        tcp_idle_s=args.timer_b,
        tcp_message_s=args.timer_b,
        tcp_max_write_buffer=64 * 1024,
    )
    tmp = Path(tempfile.mkdtemp(prefix="sip-flood-"))
    result = await calls_through_flood(
        tmp,
        live_calls=args.calls,
        max_calls=args.max_calls,
        flood_s=args.seconds,
        limits=limits,
    )
    result.pop("live_calls_sipp_log", None)
    return {
        "live_calls": args.calls,
        "max_calls": args.max_calls,
        "timer_b_s": args.timer_b,
        **result,
        "max_rtp_gap_ms_overall": max(result["max_rtp_gap_ms"]),
        "cpu": cpu_description(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=4, help="live calls during the burst")
    parser.add_argument("--max-calls", type=int, default=8, help="the endpoint's call slots")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the burst")
    parser.add_argument(
        "--timer-b", type=float, default=2.0, help="Timer B/H and TCP deadlines (s) for the run"
    )
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(asyncio.run(main(parser.parse_args())), ensure_ascii=False))
