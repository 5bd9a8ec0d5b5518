"""Resident memory of a process and all its descendants (Linux /proc), for benches.

The voicebot service is one Python process plus its pjsua worker processes; its memory
is the sum over that tree.
"""

from __future__ import annotations

import os
from pathlib import Path


def children_of(pid: int) -> list[int]:
    """Every live process whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children_of(current))
    return tree


def rss_bytes(pid: int) -> int:
    """VmRSS of one process (0 if it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss_bytes(pid: int | None = None) -> int:
    """Summed VmRSS of ``pid`` (default: this process) and its descendants."""
    return sum(rss_bytes(p) for p in descendants(pid or os.getpid()))


def tree_rss_by_process(pid: int | None = None) -> dict[str, int]:
    """VmRSS of ``pid`` and each descendant, keyed "pid name" (which process grows)."""
    found = {}
    for p in descendants(pid or os.getpid()):
        try:
            name = Path(f"/proc/{p}/comm").read_text().strip()
        except OSError:
            continue
        found[f"{p} {name}"] = rss_bytes(p)
    return found
