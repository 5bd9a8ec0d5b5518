"""Readiness and watchdog pings to systemd (``Type=notify``, ``WatchdogSec=``).

The protocol is one datagram of ``KEY=value`` lines to the Unix socket named in
``$NOTIFY_SOCKET`` (a leading ``@`` is an abstract socket); written here in a few lines
so that no library is needed. Outside systemd (no ``$NOTIFY_SOCKET``) every call does
nothing, so the service runs the same under any supervisor.

``READY=1`` is sent once SIP and the web app listen, so that systemd (and whatever waits
on the unit) counts the service as started only when it can take a call. The watchdog
pings come from the event loop that carries every call's audio: a loop stuck for longer
than ``WatchdogSec`` cannot serve callers either, and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not address.startswith(("/", "@")):
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            # Never wait: this runs on the event loop that carries the calls' audio, and a
            # receiver that stopped reading would otherwise block it once its queue is full.
            sock.send(state.encode(), socket.MSG_DONTWAIT)
    except BlockingIOError:
        log.debug("systemd notification %r dropped: the receiver's queue is full", state)
        return False
    except OSError as exc:
        log.warning("systemd notification %r not sent: %s", state.split("=")[0], exc)
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Seconds between watchdog pings (half of ``WatchdogSec``), None if none are wanted."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (a parent that started this one)
    return int(usec) / 1e6 / 2


async def watchdog_pings(interval_s: float) -> None:
    """Ping the watchdog every ``interval_s`` for as long as the event loop runs."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)
