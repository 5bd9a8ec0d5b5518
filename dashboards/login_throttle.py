"""Bounds on password checking: how many at once, and how many failures per source address.

argon2 is deliberately expensive (tens of milliseconds of CPU and 64 MiB of memory per
check), so a burst of logins must neither occupy every worker thread nor every core.
``LoginGate`` lets a fixed number of checks run at a time (the rest wait on the event
loop, not in threads), refuses new ones when too many are already waiting, and refuses
a source that has failed too often recently, before any hash is computed (an IPv4
address or an IPv6 /64, ``source_key``). The per-account lock in ``dashboards.accounts``
stays the rule for each user name; this is the rule for each client.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

CONCURRENT_CHECKS = 2  # password checks running at once (the web app's share of the CPU)
MAX_WAITING = 32  # checks allowed to queue behind them; more are refused at once
SOURCE_FAILURES = 20  # failed logins from one address within SOURCE_WINDOW_S ...
SOURCE_WINDOW_S = 600.0  # ... after which that address is refused until they age out
TRACKED_SOURCES = 10_000  # addresses remembered (least recently failed are forgotten)

BUSY_MESSAGE = "ただいまログインが混み合っています。少し時間をおいてから、もう一度お試しください。"
SOURCE_MESSAGE = (
    "この端末からのログインの失敗が続いています。しばらく時間をおいてから、もう一度お試しください。"
)


IPV6_SOURCE_PREFIX = 64  # one subscriber's network: an IPv6 client picks any of 2**64


def source_key(address: str) -> str:
    """The source a failed login is counted against: an IPv4 address, or an IPv6 /64.

    One IPv6 host can use a fresh address from its /64 for every attempt, so counting
    exact addresses would never reach the limit. IPv4-mapped IPv6 counts as the IPv4
    address; anything that is not an address (a test client, a Unix socket) as itself.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # without an IPv6 zone
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_SOURCE_PREFIX), strict=False))
    return str(ip)


class LoginRefused(Exception):
    """The attempt was not checked at all; the message is Japanese, for the login page."""


class LoginGate:
    """Concurrency and per-source limits around password checks (one per app)."""

    def __init__(
        self,
        concurrent: int = CONCURRENT_CHECKS,
        max_waiting: int = MAX_WAITING,
        source_failures: int = SOURCE_FAILURES,
        window_s: float = SOURCE_WINDOW_S,
    ):
        self._slots = asyncio.Semaphore(concurrent)
        self._max_waiting = max_waiting
        self._waiting = 0
        self._source_failures = source_failures
        self._window_s = window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, source: str, now: float) -> deque[float]:
        times = self._failures.get(source)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window_s:
            times.popleft()
        if not times:
            del self._failures[source]
        return times

    def record_failure(self, source: str) -> None:
        """Count a failed login from ``source`` (memory stays bounded)."""
        source = source_key(source)
        now = time.monotonic()
        times = self._recent(source, now)
        times.append(now)
        while len(times) > self._source_failures:
            times.popleft()
        self._failures[source] = times
        self._failures.move_to_end(source)
        while len(self._failures) > TRACKED_SOURCES:
            self._failures.popitem(last=False)

    @asynccontextmanager
    async def check(self, source: str) -> AsyncIterator[None]:
        """Hold a checking slot for one login from ``source``; LoginRefused if not allowed."""
        if len(self._recent(source_key(source), time.monotonic())) >= self._source_failures:
            raise LoginRefused(SOURCE_MESSAGE)
        if self._waiting >= self._max_waiting:
            raise LoginRefused(BUSY_MESSAGE)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
