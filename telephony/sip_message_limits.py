"""Bounds on what one SIP message from the network may cost the dispatcher to read.

The dispatcher parses on the event loop that also carries calls and the web app, so every
message is held to fixed sizes before and while it is read: the whole message, the head
(start line and headers), the number of header lines, the length of one line, and the
items of the list headers. A message over any bound is dropped unanswered, so the work
per message has a small fixed ceiling (bench/sip_parse.py measures it). The bounds are
far above what a PBX sends (a real INVITE head is about 1 kB with a handful of Vias) and
above what pjsua itself accepts (it drops messages over 4,000 bytes: the dispatcher answers
513 to a request it would relay at a greater size).

Strangers (sources outside ``allowed_peers``) get even less: a token bucket limits how
many of their INVITEs are read and answered with a minimal 403, everything else from them
is dropped without being parsed, and a throttled logger keeps a flood from filling the log.
"""

from __future__ import annotations

import logging
import time

MAX_MESSAGE_BYTES = 65_535  # a whole message: a UDP datagram, or head and body on TCP
MAX_HEAD_BYTES = 8_192  # start line and headers, up to the blank line
MAX_HEADER_LINES = 100  # header lines, folded continuation lines included
MAX_LINE_BYTES = 2_048  # one line (start line or header line)
MAX_LIST_ITEMS = 16  # values of each of Via, Route, Record-Route (one or several lines)
MAX_CONTENT_LENGTH_DIGITS = 5  # Content-Length <= MAX_MESSAGE_BYTES
MAX_CSEQ = 2**31 - 1  # RFC 3261 8.1.1.5
# The largest datagram a pjsua worker reads: PJSIP_MAX_PKT_LEN of the pjsua2 wheel (2.15.1,
# pjproject's default). pjsua drops a longer one unanswered, so the dispatcher answers a
# request that would be longer once relayed (its own Via and Record-Route added) with 513.
WORKER_MAX_MESSAGE_BYTES = 4_000

# INVITEs from strangers that are read and answered 403 (the rest are dropped unread).
STRANGER_ANSWERS_PER_S = 5.0
STRANGER_ANSWER_BURST = 10


class TokenBucket:
    """At most ``burst`` events at once and ``rate`` per second on average."""

    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        """True (and one token spent) if an event may happen now."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class ThrottledLog:
    """One log line per ``interval_s`` at most; the lines held back are counted and
    reported with the next one, so a flood of bad packets costs one line a minute."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0):
        self.logger = logger
        self.interval_s = interval_s
        self._last: float | None = None
        self._held_back = 0

    def log(self, level: int, text: str, *args: object, exc_info: bool = False) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval_s:
            self._held_back += 1
            return
        self._last = now
        if self._held_back:
            text += " (and %d more like it since the last report)"
            args = (*args, self._held_back)
            self._held_back = 0
        self.logger.log(level, text, *args, exc_info=exc_info)
