"""A node's bot follows the FAQ version published last, whichever node published it.

With several nodes on one database, operators publish on a web node while the calls are
taken on call nodes. Each node that runs a bot polls the database every few seconds; when
it finds a newer published version it loads that snapshot, lets the bot render its answers
(``Bot.reload_faq``: calls in progress keep the FAQ they started with) and switches. It
writes the version it speaks to ``node_faq_versions`` on every check, so the version page
shows whether every node has switched, and when each last looked.

The same check-in tells the nodes that a node has died: on every check each node closes
as ``abandoned`` the open calls of call nodes silent for ``SILENT_NODE_S``, so the
records and reports do not wait for a dead node to come back.

The node where an operator publishes (role ``all``) need not wait for its next poll:
``Services.on_faq_published`` calls ``sync`` straight away.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from dashboards.call_records import close_calls_of_silent_nodes
from dashboards.faq_versions import record_node_version

if TYPE_CHECKING:
    from dashboards.faq_versions import FaqVersions
    from faq.store import Faq

log = logging.getLogger(__name__)

POLL_S = 3.0
# A node that has not checked in for this long is dead: its open calls are closed as
# abandoned by the nodes still running (40 missed checks: a slow database is not death).
SILENT_NODE_S = 120.0


class FaqFollower:
    """Keeps one node's bot on the newest published FAQ version."""

    def __init__(
        self,
        versions: FaqVersions,
        reload: Callable[[Faq], Awaitable[None]],
        node: str,
        role: str,
        poll_s: float = POLL_S,
    ):
        self.versions = versions
        self.reload = reload
        self.node = node
        self.role = role
        self.poll_s = poll_s
        self.current = 0  # the version the bot speaks; 0 before the first check
        self._lock = asyncio.Lock()  # one switch at a time (poll and publish may meet)
        self._task: asyncio.Task | None = None

    async def sync(self) -> int:
        """Switch to the newest published version if the bot is behind; the version now.

        Version 1 is the FAQ the bot loaded from its own folder at start, so a node that
        starts while nothing newer is published renders nothing again.
        """
        async with self._lock:
            newest = await asyncio.to_thread(self.versions.published_number)
            if newest > self.current:
                if newest > 1:
                    entries = await asyncio.to_thread(self.versions.entries_of, newest)
                    await self.reload(self.versions.faq_of(entries))
                    log.info("node %s speaks FAQ version %d now", self.node, newest)
                self.current = newest
            db = self.versions.db
            await asyncio.to_thread(record_node_version, db, self.node, self.role, self.current)
            silent_for = dt.timedelta(seconds=SILENT_NODE_S)
            closed = await asyncio.to_thread(close_calls_of_silent_nodes, db, silent_for)
            if closed:
                log.warning("closed %d call(s) of call nodes that stopped (abandoned)", closed)
            return self.current

    def start(self) -> None:
        """Poll in the background until ``stop``."""
        self._task = asyncio.create_task(self._poll(), name="faq-follower")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database outage: try again at the next poll
                log.warning("FAQ version check failed (retrying): %s", exc)
