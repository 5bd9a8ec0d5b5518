"""Worst-case cost of one SIP message at the dispatcher, and how fast strangers are dropped.

Prints JSON:

* ``limits``: the bounds of telephony/sip_message_limits.py;
* ``inputs``: for crafted messages (a 21,000-item Via list, 12,000 tiny headers, a Route of
  30,000 '<', a maximum-size datagram, and the largest messages within the bounds), the
  parse time (parse_datagram) and the handle time (SipDispatcher.datagram, the whole
  receive path with no socket) from an allowed peer and from a stranger, in microseconds:
  median and worst of ``--repeats`` runs, and what became of the message;
* ``stranger_drop``: datagrams per second the dispatcher drops from a source outside
  ``allowed_peers``: in process (the handler alone) and over loopback (a sender process
  flooding a started dispatcher), with the event loop's worst lateness meanwhile;
* ``before`` (with ``--before REV``): parse times of the same inputs with the parser of
  git revision REV, run once each.

Run: .venv/bin/python bench/sip_parse.py [--repeats 50] [--flood-seconds 3] [--before REV]
Name the CPU with every figure (printed as ``cpu``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from telephony import sip_message_limits as limits  # noqa: E402
from telephony.sip_dispatcher import SipDispatcher  # noqa: E402
from telephony.sip_message import SipBadRequest, SipParseError, parse_datagram  # noqa: E402

ALLOWED = ("10.0.0.5", 5060)
STRANGER = ("192.0.2.66", 5060)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def message(extra: str = "", body: bytes = b"", via: str | None = None) -> bytes:
    via = via or "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-bench;rport"
    head = (
        "INVITE sip:taxbot@10.0.0.20 SIP/2.0\r\n"
        f"Via: {via}\r\n"
        'From: "Taro" <sip:0312345678@10.0.0.5>;tag=abc\r\n'
        "To: <sip:taxbot@10.0.0.20>\r\n"
        "Call-ID: bench-1@10.0.0.5\r\n"
        "CSeq: 1 INVITE\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def crafted_inputs() -> dict[str, bytes]:
    """Attack inputs (over the bounds) and the costliest inputs within them."""
    vias_at_limit = ", ".join(
        f"SIP/2.0/UDP 198.51.100.{i}:5060;branch=z9hG4bK-{i:04d}x;rport"
        for i in range(limits.MAX_LIST_ITEMS - 1)
    )
    quoted = '"' + 'a\\\\\\",<>' * 200 + '" <sip:x@h>'
    line_room = limits.MAX_LINE_BYTES - 20
    lines: list[str] = []
    room = limits.MAX_HEAD_BYTES - len(message()) - 8
    while room > 40 and len(lines) < limits.MAX_HEADER_LINES - 10:
        value = ("<sip:p>," * (line_room // 8))[: min(line_room, room - 20)]
        lines.append(f"X-Pad{len(lines)}: {value.rstrip(',')}\r\n")
        room -= len(lines[-1])
    body = b"v=0\r\n" * 13_200
    datagram = message(body=body)
    datagram = message(body=body[: len(body) - (len(datagram) - limits.MAX_MESSAGE_BYTES)])
    return {
        "via_list_21000_items": message(via="a," * 21_000 + "a"),
        "via_list_at_limit": message(via=vias_at_limit),
        "tiny_headers_12000": message(extra="a:\r\n" * 12_000),
        "headers_at_limit": message(extra="a: b\r\n" * (limits.MAX_HEADER_LINES - 8)),
        "route_30000_angle_brackets": message(extra="Route: " + "<" * 30_000 + "\r\n"),
        "route_angle_brackets_at_limit": message(extra="Route: " + "<" * line_room + "\r\n"),
        "quoted_escapes_in_contact": message(extra=f"Contact: {quoted}\r\n"),
        "head_at_limit_of_long_lists": message(extra="".join(lines)),
        "max_size_datagram": datagram,
    }


def outcome(data: bytes) -> str:
    try:
        parse_datagram(data)
    except SipBadRequest as exc:
        return f"400 ({exc.reason})"
    except SipParseError as exc:
        return f"dropped ({exc})"
    return "relayed"


def timed_us(function, repeats: int) -> dict[str, float]:
    """Median, 95th percentile and worst microseconds of ``repeats`` calls (the worst
    includes whatever else this shared machine was doing at that moment)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    return {
        "median": round(statistics.median(times), 1),
        "p95": round(times[min(len(times) - 1, int(len(times) * 0.95))], 1),
        "worst": round(times[-1], 1),
    }


def offline_dispatcher() -> SipDispatcher:
    """A dispatcher that is not listening (its sends go nowhere), with one worker."""
    dispatcher = SipDispatcher("127.0.0.1", 0, allowed_peers=[ALLOWED[0]], max_calls=4)
    dispatcher.port = 5060
    dispatcher.add_worker("w", ("127.0.0.1", 40001), 4)
    return dispatcher


def measure_inputs(inputs: dict[str, bytes], repeats: int) -> dict[str, dict]:
    results = {}
    for name, data in inputs.items():
        dispatcher = offline_dispatcher()

        def parse(data: bytes = data) -> None:
            with contextlib.suppress(SipParseError):
                parse_datagram(data)

        def from_allowed(data: bytes = data, dispatcher: SipDispatcher = dispatcher) -> None:
            dispatcher.datagram(data, ALLOWED)

        def from_stranger(data: bytes = data, dispatcher: SipDispatcher = dispatcher) -> None:
            dispatcher.datagram(data, STRANGER)

        results[name] = {
            "bytes": len(data),
            "outcome": outcome(data),
            "parse_us": timed_us(parse, repeats),
            "handle_allowed_us": timed_us(from_allowed, repeats),
            "handle_stranger_us": timed_us(from_stranger, repeats),
        }
    return results


def in_process_drop_rate(data: bytes, seconds: float) -> int:
    dispatcher = offline_dispatcher()
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            dispatcher.datagram(data, STRANGER)
        count += 1000
    return round(count / seconds)


FLOOD = """
import socket, sys, time
port, seconds, payload = int(sys.argv[1]), float(sys.argv[2]), open(sys.argv[3], "rb").read()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.2", 0))
sent, deadline = 0, time.monotonic() + seconds
while time.monotonic() < deadline:
    for _ in range(200):
        try:
            s.sendto(payload, ("127.0.0.1", port))
            sent += 1
        except OSError:
            pass
print(sent)
"""


async def loopback_drop_rate(data: bytes, seconds: float) -> dict:
    """A started dispatcher; a sender process on 127.0.0.2 floods it with ``data``."""
    dispatcher = SipDispatcher("127.0.0.1", 0, allowed_peers=["127.0.0.1"], max_calls=4)
    port = await dispatcher.start()
    sock = dispatcher._udp.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    lateness = 0.0

    async def ticker() -> None:
        nonlocal lateness
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lateness = max(lateness, time.perf_counter() - start - 0.01)

    with tempfile.NamedTemporaryFile(suffix=".sip") as payload:
        payload.write(data)
        payload.flush()
        tick = asyncio.create_task(ticker())
        before = dispatcher.dropped_from_strangers
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            FLOOD,
            str(port),
            str(seconds),
            payload.name,
            stdout=subprocess.PIPE,
        )
        out, _ = await process.communicate()
        await asyncio.sleep(0.2)  # what is still queued in the socket
        elapsed = time.perf_counter() - started
        dropped = dispatcher.dropped_from_strangers - before
        tick.cancel()
    await dispatcher.stop()
    sent = int(out.decode().strip() or 0)
    return {
        "sent": sent,
        "dropped_by_dispatcher": dropped,
        "datagrams_per_s": round(dropped / elapsed),
        "lost_in_kernel": max(0, sent - dropped),
        "event_loop_worst_lateness_ms": round(lateness * 1000, 2),
    }


def parse_with_revision(revision: str, inputs: dict[str, bytes]) -> dict[str, float]:
    """Parse times (ms, one run each) with telephony/sip_message.py of ``revision``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:telephony/sip_message.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "old_sip_message.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("old_sip_message", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    results = {}
    for name, data in inputs.items():
        start = time.perf_counter()
        try:
            parsed = module.parse_datagram(data)
            for value in parsed.get_all("route"):
                module.parse_uri(module.uri_of(value))  # as the old dispatcher did
        except (module.SipParseError, ValueError):
            pass
        results[name] = round((time.perf_counter() - start) * 1000, 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--flood-seconds", type=float, default=3.0)
    parser.add_argument("--before", help="git revision whose parser to time as well")
    args = parser.parse_args()
    inputs = crafted_inputs()
    options = message().replace(b"INVITE", b"OPTIONS")
    result = {
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "limits": {
            name: getattr(limits, name)
            for name in dir(limits)
            if name.isupper() and isinstance(getattr(limits, name), int | float)
        },
        "inputs": measure_inputs(inputs, args.repeats),
        "stranger_drop": {
            "in_process_options_per_s": in_process_drop_rate(options, 1.0),
            "in_process_invite_flood_per_s": in_process_drop_rate(message(), 1.0),
            "in_process_huge_via_list_per_s": in_process_drop_rate(
                inputs["via_list_21000_items"], 1.0
            ),
            "loopback_options": asyncio.run(loopback_drop_rate(options, args.flood_seconds)),
        },
    }
    if args.before:
        result["before"] = {"revision": args.before, **parse_with_revision(args.before, inputs)}
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
