"""Native memory: glibc's arenas are capped, large blocks are mapped on their own and freed
heap is given back (in a child process, so that the test run's own allocator is left as
it is)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CHILD = """
import asyncio, json
from commands import native_memory

limited = native_memory.limit_arenas()
blocks = [bytearray(64 * 1024) for _ in range(4000)]  # ~256 MB in small blocks
del blocks[::2]
before = int(open("/proc/self/statm").read().split()[1])
trimmed = native_memory.trim()
after = int(open("/proc/self/statm").read().split()[1])

async def periodic():
    task = asyncio.create_task(native_memory.trim_periodically(0.01))
    await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return True
    return False

print(json.dumps({"limited": limited, "trimmed": trimmed, "before": before,
                  "after": after, "cancelled": asyncio.run(periodic())}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_arenas_are_capped_and_freed_heap_goes_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["limited"] is True
    assert result["trimmed"] is True  # there was freed heap to give back
    assert result["after"] < result["before"]  # resident pages went down
    assert result["cancelled"] is True


MAPPED = """
import json
from commands import native_memory

native_memory.limit_arenas()
big = bytearray(8 << 20)  # mapped; freeing it would raise glibc's own threshold to 8 MiB
del big
block = bytearray(2 << 20)
print(json.dumps({"mapped": native_memory.malloc_info()["mapped"]}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_megabyte_block_is_mapped_even_after_a_larger_one_was_freed():
    """Left to glibc, the 2 MiB block would be carved out of an arena (and leave a hole)."""
    out = subprocess.run([sys.executable, "-c", MAPPED], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["mapped"] >= 2 << 20
