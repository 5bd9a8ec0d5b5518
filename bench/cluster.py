"""Scale-out bench: Kamailio in front of 1, 2 and 3 call nodes, on one machine. Prints JSON.

Three call nodes (``voicebot serve --role call``, pyttsx3 voice, Whisper as configured), one
fresh PostgreSQL database and one Mosquitto broker are started once (tests/cluster_calls.py);
for each node count N a Kamailio from deploy/kamailio/kamailio.cfg is put in front of the
first N nodes, and two loads are offered through it:

* ``held``: ``--per-node`` callers per node at once (the soak callers, behind the edge: each
  waits for the greeting, asks a recorded FAQ question, listens, says goodbye). Reported:
  calls answered, callers who heard the answer to their question (record and audio, as
  tests/test_cluster.py judges it), the nodes that took them, and the turn latency (the
  caller's last speech to the start of the bot's reply, from the call records) p50/p95 for
  the questions and over every turn.
* ``setup``: short calls (answered, 1.5 s, hung up by the caller) offered at
  ``--rate`` calls a second for ``--seconds``; reported: offered, answered (200),
  refused (any other final answer, or none), answered per second.

On one 2-core machine the nodes share the same two cores, so more nodes add processes,
not CPU: the figures show the cost of the edge and of several nodes, not real scale-out.

    .venv/bin/python bench/cluster.py [--nodes 1,2,3] [--per-node 4] [--rate 6] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests", ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from cluster_calls import Cluster, heard_reply, place, question_turn, wait_ended  # noqa: E402
from kamailio_edge import Kamailio  # noqa: E402
from sipp.sip_harness import run_sipp  # noqa: E402
from soak import SoakOptions, cpu_model, soak_database  # noqa: E402

NODE_NAMES = ["call-a", "call-b", "call-c"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,2,3", help="node counts to measure")
    parser.add_argument("--per-node", type=int, default=4, help="callers held per node")
    parser.add_argument("--rate", type=float, default=6.0, help="short calls offered per s")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long they are offered")
    parser.add_argument("--work", type=Path, default=None, help="keep logs here")
    return parser.parse_args(argv)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))], 1)


async def held(cluster: Cluster, edge: Kamailio, count: int) -> dict[str, Any]:
    """``count`` conversational callers at once through ``edge``."""
    callers = cluster.callers(count, edge)
    started = time.monotonic()
    results = await place(callers)
    elapsed = time.monotonic() - started
    placed = cluster.locate(callers)
    ids = [p.record_id for p in placed if p.record_id]
    records = await asyncio.to_thread(wait_ended, cluster.db, ids)
    question_ms, turn_ms = [], []
    heard = 0
    for p in placed:
        record = records.get(p.record_id)
        if record is None:
            continue
        heard += heard_reply(p.caller, record)
        first = question_turn(record)
        if first is not None and first.latency_ms is not None:
            question_ms.append(first.latency_ms)
        turn_ms += [t.latency_ms for t in record.turns if t.latency_ms is not None]
    return {
        "callers": count,
        "answered": sum(r.invite_status == 200 for r in results),
        "heard_answer": heard,
        "by_node": dict(Counter(p.node for p in placed)),
        "outcomes": dict(Counter(records[i].outcome for i in ids if i in records)),
        "question_latency_ms": {
            "p50": percentile(question_ms, 50),
            "p95": percentile(question_ms, 95),
            "max": round(max(question_ms), 1) if question_ms else None,
        },
        "turn_latency_ms": {"p50": percentile(turn_ms, 50), "p95": percentile(turn_ms, 95)},
        "turns": len(turn_ms),
        "wall_s": round(elapsed, 1),
    }


def invite_finals(messages: str) -> dict[str, int]:
    """Call-ID -> the final status of its INVITE, from sipp's message trace."""
    finals: dict[str, int] = {}
    for block in messages.split("----------------------------------------------- ")[1:]:
        head = [line for line in block.splitlines()[:3] if line.strip()]
        if not any("received" in line for line in head[:2]):
            continue  # the block's first line is its time, the next says sent or received
        status = re.search(r"^\s*SIP/2\.0 (\d{3})", block, re.M)
        call_id = re.search(r"^\s*Call-ID:\s*(\S+)", block, re.M | re.I)
        if status and call_id and re.search(r"^\s*CSeq:\s*\d+ INVITE", block, re.M | re.I):
            code = int(status.group(1))
            if code >= 200:
                finals.setdefault(call_id.group(1), code)
    return finals


async def setup_rate(edge: Kamailio, work: Path, rate: float, seconds: float) -> dict[str, Any]:
    """Short calls offered at ``rate`` a second for ``seconds``."""
    offered = max(1, round(rate * seconds))
    media = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        started = time.monotonic()
        run = await run_sipp(
            "uac_via_edge.xml",
            edge.port,
            work,
            keys={"rtp_port": str(media[0].get_extra_info("sockname")[1])},
            calls=offered,
            limit=offered,
            extra=["-r", f"{rate:g}", "-rp", "1000", "-d", "1500"],  # 1.5 s calls
            timeout_s=seconds + 90,
        )
        elapsed = time.monotonic() - started
    finally:
        media[0].close()
    finals = invite_finals(run.messages)
    answered = sum(code == 200 for code in finals.values())
    return {
        "offered": offered,
        "offered_per_s": rate,
        "answered": answered,
        "refused": offered - answered,
        "refusals": dict(Counter(code for code in finals.values() if code != 200)),
        "answered_per_s": round(answered / seconds, 2),
        "wall_s": round(elapsed, 1),
    }


async def measure(args: argparse.Namespace, work: Path, database_url: str) -> dict[str, Any]:
    counts = [int(n) for n in args.nodes.split(",")]
    cluster = await asyncio.to_thread(
        Cluster, work, database_url, NODE_NAMES[: max(counts)], web_node=False
    )
    steps = []
    try:
        for n in counts:
            nodes = [cluster.nodes[name] for name in NODE_NAMES[:n]]
            edge = await asyncio.to_thread(cluster.edge_for, nodes)
            try:
                hold = await held(cluster, edge, args.per_node * n)
                await asyncio.sleep(5)  # the slots of ended calls come back
                setup = await setup_rate(edge, work, args.rate, args.seconds)
            finally:
                edge.stop()
            steps.append({"nodes": n, "held": hold, "setup": setup})
            print(json.dumps(steps[-1], ensure_ascii=False), file=sys.stderr, flush=True)
            await asyncio.sleep(5)
    finally:
        codes = await asyncio.to_thread(cluster.stop)
    return {"steps": steps, "node_exit_codes": codes}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    with soak_database(SoakOptions(postgres=True), work) as database:
        result = asyncio.run(measure(args, work, database["url"]))
    report = {
        "bench": "cluster",
        "cpu": f"{os.cpu_count()}-core {cpu_model()}",
        "note": (
            "every node, Kamailio, PostgreSQL, Mosquitto and the callers share these cores: "
            "more nodes add processes, not CPU, so the curve shows overhead, not scale-out"
        ),
        "per_node_calls_held": args.per_node,
        "max_calls_per_node": 8,
        "voice": "pyttsx3 (espeak-ng)",
        **result,
        "work": str(work),
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
