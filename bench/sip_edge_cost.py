"""What SIP routing costs: Kamailio at the edge against the node's own SIP dispatcher.

Measures the two ways a call's signalling can be routed on a call node, to decide whether
Kamailio should also stand in front of each node's pjsua workers:

* ``kamailio``: the shipped deploy/kamailio/kamailio.cfg in front of a sipp UAS that
  answers every call (bench/sip_edge_uas.xml) and the OPTIONS probes; ``--calls`` short sipp calls
  (INVITE, ACK, BYE through the edge) at ``--rate`` a second. CPU milliseconds of all
  Kamailio processes per call, and their memory (PSS, the processes share pages).
* ``dispatcher``: telephony.sip_dispatcher.SipDispatcher, in process with no socket, on
  a typical call's requests from the caller (INVITE with SDP, ACK, BYE): microseconds
  per call, median of ``--repeats``.

Prints JSON and names the CPU. Run: .venv/bin/python bench/sip_edge_cost.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests", ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from kamailio_edge import Kamailio  # noqa: E402
from nodes import free_port  # noqa: E402
from sip_parse import ALLOWED, cpu_name, offline_dispatcher  # noqa: E402
from sipp.sip_harness import run_sipp  # noqa: E402

SIPP = shutil.which("sipp") or "sipp"
UAS_SCENARIO = Path(__file__).with_name("sip_edge_uas.xml")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SDP = (
    "v=0\r\no=caller 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls through Kamailio")
    parser.add_argument("--rate", type=float, default=20.0, help="calls offered per second")
    parser.add_argument("--repeats", type=int, default=2000, help="dispatcher calls timed")
    return parser.parse_args(argv)


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def pss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def kamailio_cost(calls: int, rate: float) -> dict[str, Any]:
    """Kamailio's CPU per call and its memory, relaying short calls to a sipp UAS."""
    work = Path(tempfile.mkdtemp(prefix="sip-edge-"))
    uas_port = free_port()
    command = [SIPP, "-sf", str(UAS_SCENARIO), "-aa", "-i", "127.0.0.1", "-p", str(uas_port)]
    uas = subprocess.Popen(
        [*command, "-nostdin"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    edge = Kamailio(work, [SimpleNamespace(name="uas", sip_port=uas_port)])
    try:
        edge.wait_listening()
        time.sleep(3)  # the probes have seen the UAS
        pids = process_tree(edge.proc.pid)
        idle_pss = pss_mib(pids)
        before = cpu_seconds(pids)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media:
            media.bind(("127.0.0.1", 0))
            started = time.monotonic()
            run = asyncio.run(
                run_sipp(
                    "uac_via_edge.xml",
                    edge.port,
                    work,
                    keys={"rtp_port": str(media.getsockname()[1])},
                    calls=calls,
                    limit=calls,
                    extra=["-r", f"{rate:g}", "-d", "200"],
                    timeout_s=calls / rate + 60,
                )
            )
            elapsed = time.monotonic() - started
        used = cpu_seconds(pids) - before
        return {
            "calls": calls,
            "sipp_returncode": run.returncode,
            "sipp_errors": run.errors[-600:] if run.returncode else "",
            "processes": len(pids),
            "cpu_ms_per_call": round(used * 1000 / calls, 3),
            "cpu_percent_of_one_core": round(100 * used / elapsed, 2),
            "pss_mib_idle": idle_pss,
            "pss_mib_after": pss_mib(pids),
        }
    finally:
        edge.stop()
        uas.terminate()
        uas.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def call_requests(n: int) -> list[bytes]:
    """A call's requests from the caller (INVITE with SDP, ACK, BYE), Call-ID ``n``."""
    common = (
        f'From: "Taro" <sip:0312345678@10.0.0.5>;tag=abc{n}\r\n'
        f"Call-ID: bench-{n}@10.0.0.5\r\nMax-Forwards: 70\r\n"
        "Contact: <sip:0312345678@10.0.0.5:5060>\r\n"
    )
    via = f"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-{n}-%s;rport\r\n"
    invite = (
        f"INVITE sip:taxbot@10.0.0.20 SIP/2.0\r\n{via % 'i'}{common}"
        "To: <sip:taxbot@10.0.0.20>\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n{SDP}"
    )
    to = "To: <sip:taxbot@10.0.0.20>;tag=bot\r\n"
    ack = f"ACK sip:taxbot@10.0.0.20 SIP/2.0\r\n{via % 'a'}{common}{to}CSeq: 1 ACK\r\n"
    bye = f"BYE sip:taxbot@10.0.0.20 SIP/2.0\r\n{via % 'b'}{common}{to}CSeq: 2 BYE\r\n"
    return [m.encode() for m in (invite, ack + "Content-Length: 0\r\n\r\n", bye + "\r\n")]


def dispatcher_cost(repeats: int) -> dict[str, Any]:
    """Microseconds the node's dispatcher spends on a call's requests from the caller."""
    times = []
    for n in range(repeats):
        dispatcher = offline_dispatcher()  # a fresh one: every INVITE finds a free slot
        requests = call_requests(n)
        start = time.perf_counter()
        for data in requests:
            dispatcher.datagram(data, ALLOWED)
        times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    return {
        "calls": repeats,
        "us_per_call_median": round(statistics.median(times), 1),
        "us_per_call_p95": round(times[int(len(times) * 0.95)], 1),
        "note": "in the node's main process: no process or memory of its own",
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(
        json.dumps(
            {
                "cpu": cpu_name(),
                "kamailio": kamailio_cost(args.calls, args.rate),
                "dispatcher": dispatcher_cost(args.repeats),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
