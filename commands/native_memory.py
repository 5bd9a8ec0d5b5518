"""Native memory of a long-running service: fewer malloc arenas, and freed heap given back.

The speech models (CTranslate2, onnxruntime) allocate and free large buffers on many
threads. glibc gives each thread group its own arena and keeps freed heap in it, so the
resident size of a service that has been taking calls for a while grows far past what it
uses: in a 10-minute soak (8 calls, 2-core AMD EPYC) the main process kept 758 MB of freed
heap, and ``malloc_trim`` took it from 1556 MiB back to 916. Two arenas and a trim every
minute keep it near what is in use (bench/soak.py). Blocks of a megabyte or more are
mapped on their own rather than carved out of the arenas: in the same soak the heap held
free went from 72-148 MiB to 45-101, and the main process from 799-840 MiB (minutes 1 and
10) to 769-790, with the same reply latency. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt parameters (glibc malloc.h)
M_MMAP_THRESHOLD = -3
ARENAS = 2
MMAP_THRESHOLD = 1 << 20  # bytes: blocks this large get mappings of their own
TRIM_EVERY_S = 60.0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc, loaded once (finding it runs ldconfig), or None elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Cap glibc's malloc arenas and keep blocks of ``mmap_threshold`` bytes or more out of
    them; call before the models start their threads.

    glibc raises its mmap threshold each time a mapped block is freed (up to 32 MiB), so
    after the first calls the encoder's and the audio's megabyte buffers are carved out of
    the arenas among long-lived objects and leave holes there when freed. A fixed
    threshold keeps mapping them whole and unmapping them on free.
    """
    libc = _glibc()
    if libc is None:
        return False
    capped = bool(libc.mallopt(M_ARENA_MAX, arenas))
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and capped


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (sizes in bytes, summed over every malloc arena)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def malloc_info() -> dict[str, int] | None:
    """What glibc's malloc holds, in bytes: ``in_use`` (live blocks, mapped ones included),
    ``free`` (freed but kept in the arenas), ``mapped`` (blocks with mappings of their
    own) and ``heap`` (arenas plus mappings); None without glibc."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return {
        "in_use": info.uordblks + info.hblkhd,
        "free": info.fordblks,
        "mapped": info.hblkhd,
        "heap": info.arena + info.hblkhd,
    }


def trim() -> bool:
    """Give freed heap back to the system now (blocking: a few milliseconds)."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


async def trim_periodically(every_s: float = TRIM_EVERY_S) -> None:
    """``trim`` off the event loop every ``every_s`` seconds, until cancelled."""
    if _glibc() is None:
        log.info("not glibc: freed heap is left to the allocator")
        return
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(trim)
