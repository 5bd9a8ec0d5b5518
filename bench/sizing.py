"""Sizing: how many simultaneous calls, and call nodes, a city needs at its busiest hour.

From the calls a year, the share of the busiest month (tax notices go out in May–June),
the working days in it, the busy-hour share of a day and the average length of a call
with the bot, the busy-hour traffic in Erlangs follows; Erlang B gives the lines needed so
that at most ``--blocking`` of the busy hour's callers find every line busy. Call nodes
follow from the calls one node holds at the latency target (``--calls-per-node``: measure
it with ``bench/latency.py --calls 4 8`` on the machine you will deploy; a 2-core node
was rated at 8), plus one spare node so that a node can fail or be updated without
blocking callers.

    python bench/sizing.py --calls-per-year 300000
    python bench/sizing.py --calls-per-year 140000 --peak-month-share 0.15 --aht-s 150

Every input is an assumption to be replaced by the city's own figures (its switchboard's
statistics give the busy hour and the call lengths). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math


def erlang_b(traffic: float, lines: int) -> float:
    """Probability that a call finds all ``lines`` busy under ``traffic`` Erlangs.

    The recursive form B(0) = 1, B(n) = A·B(n−1) / (n + A·B(n−1)): no factorials, so it
    is exact and stable for any size a city needs.
    """
    if traffic < 0 or lines < 0:
        raise ValueError("traffic and lines must not be negative")
    blocking = 1.0
    for n in range(1, lines + 1):
        blocking = traffic * blocking / (n + traffic * blocking)
    return blocking


def lines_for(traffic: float, blocking: float) -> int:
    """The fewest lines that keep blocking at or under ``blocking``."""
    if not 0 < blocking < 1:
        raise ValueError("blocking must be between 0 and 1")
    lines = 0
    while erlang_b(traffic, lines) > blocking:
        lines += 1
    return lines


def size(
    calls_per_year: float,
    peak_month_share: float,
    working_days: int,
    busy_hour_share: float,
    aht_s: float,
    blocking: float,
    calls_per_node: int,
) -> dict[str, float | int]:
    """The sizing for one set of assumptions (see the module docstring)."""
    busy_day = calls_per_year * peak_month_share / working_days
    busy_hour = busy_day * busy_hour_share
    traffic = busy_hour * aht_s / 3600.0
    lines = lines_for(traffic, blocking)
    nodes = math.ceil(lines / calls_per_node) if lines else 0
    return {
        "calls_per_busy_day": round(busy_day),
        "calls_in_busy_hour": round(busy_hour),
        "busy_hour_erlangs": round(traffic, 2),
        "lines": lines,
        "blocking_at_lines": round(erlang_b(traffic, lines), 4),
        "call_nodes": nodes,
        "call_nodes_with_spare": nodes + 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls-per-year", type=float, default=300_000)
    parser.add_argument(
        "--peak-month-share",
        type=float,
        default=0.20,
        help="share of the year's calls in the busiest month (default 0.20)",
    )
    parser.add_argument(
        "--working-days", type=int, default=20, help="working days in that month (default 20)"
    )
    parser.add_argument(
        "--busy-hour-share",
        type=float,
        default=0.15,
        help="share of a day's calls in its busiest hour (default 0.15)",
    )
    parser.add_argument(
        "--aht-s",
        type=float,
        default=120.0,
        help="average length of a call with the bot, seconds (default 120)",
    )
    parser.add_argument(
        "--blocking",
        type=float,
        default=0.01,
        help="share of busy-hour callers who may find every line busy (default 0.01)",
    )
    parser.add_argument(
        "--calls-per-node",
        type=int,
        default=8,
        help="simultaneous calls one node holds at the latency target (default 8: 2 cores)",
    )
    args = parser.parse_args()
    inputs = vars(args)
    result = size(
        args.calls_per_year,
        args.peak_month_share,
        args.working_days,
        args.busy_hour_share,
        args.aht_s,
        args.blocking,
        args.calls_per_node,
    )
    print(json.dumps({"inputs": inputs, **result}, indent=2))


if __name__ == "__main__":
    main()
