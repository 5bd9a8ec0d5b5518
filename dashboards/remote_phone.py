"""The web node's test phone: calls placed on a call node, shown on the web node.

The web node has no bot. ``RemotePhone`` gives the test-phone routes the face of a node's
own ``WebRtcEndpoint`` (``available``, ``call``, ``accept``, ``hang_up``): it relays the
browser's SDP offer to a live call node (the one with the fewest of this node's test
calls; ``dashboards/routes/node_phone.py``), keeps whose call it is for the page's
ownership checks, and forgets the call when its ``call_ended`` event arrives on the bus
(from MQTT), it is hung up here, or its node no longer lists it (checked every few
seconds: a node that died, an MQTT outage). The browser's audio goes to the call node
directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from dashboards.db import Database
from dashboards.node_directory import live_consoles
from dashboards.remote_console import RelayedAnswer

log = logging.getLogger(__name__)

REFRESH_S = 5.0  # how often the live call nodes and their test calls are checked
SETTLE_S = 10.0  # a call this young may not be listed by its node yet
LONGEST_CALL_S = 3600.0  # a call whose end never reached us is forgotten then at the latest


@dataclass
class RemotePhoneCall:
    """A test-phone call this web node placed, on ``node``."""

    call_id: str
    owner: str
    node: str
    url: str
    watcher: asyncio.Task[None] | None = None
    placed_at: float = field(default_factory=time.monotonic)


class RemotePhone:
    """Test phone of a web node: calls go to the call nodes."""

    def __init__(
        self,
        db: Database,
        secret: str,
        bus: Any | None,
        *,
        max_calls: int,
        calls_per_owner: int = 1,
        nodes: Callable[[], dict[str, str]] | None = None,
    ):
        self._nodes = nodes or (lambda: live_consoles(db, secret))
        self._headers = {"Authorization": f"Bearer {secret}"}
        self.bus = bus
        self.max_calls = max_calls
        self.calls_per_owner = calls_per_owner
        self.calls: dict[str, RemotePhoneCall] = {}
        self._live: dict[str, str] = {}
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=3.0))
        self._task: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        """A call node was alive at the last look."""
        return bool(self._live)

    def call(self, call_id: str) -> RemotePhoneCall | None:
        return self.calls.get(call_id)

    async def accept(self, sdp: str, sdp_type: str, *, owner: str, caller: str) -> tuple[str, Any]:
        """Place the call on a call node: the call's id and the node's SDP answer.

        Raises ``CallRefused`` as a node's own endpoint would (``unavailable`` also when no
        call node answers).
        """
        from telephony.webrtc_endpoint import CallRefused, Refusal

        if sum(c.owner == owner for c in self.calls.values()) >= self.calls_per_owner:
            raise CallRefused(Refusal.OWNER_BUSY)
        if len(self.calls) >= self.max_calls:
            raise CallRefused(Refusal.FULL)
        # Counted from now on: a second offer while this one is relayed finds it.
        pending = RemotePhoneCall(f"pending-{uuid.uuid4().hex}", owner, "", "")
        self.calls[pending.call_id] = pending
        try:
            node, url, data = await self._place(sdp, sdp_type, owner, caller)
        finally:
            del self.calls[pending.call_id]
        call = RemotePhoneCall(str(data["call_id"]), owner, node, url)
        self.calls[call.call_id] = call
        call.watcher = asyncio.create_task(self._watch(call), name=f"phone-{call.call_id}")
        log.info("test phone: call %s for %s on node %s", call.call_id, owner, node)
        return call.call_id, RelayedAnswer(sdp=str(data["sdp"]), type=str(data["type"]))

    async def _place(
        self, sdp: str, sdp_type: str, owner: str, caller: str
    ) -> tuple[str, str, dict[str, Any]]:
        """Relay the offer to the live node with the fewest of our calls: (node, its URL,
        its answer)."""
        from telephony.webrtc_endpoint import CallRefused, Refusal

        await self.refresh()
        if not self._live:
            raise CallRefused(Refusal.UNAVAILABLE)
        load = {n: sum(c.node == n for c in self.calls.values()) for n in self._live}
        node = min(sorted(load), key=lambda n: load[n])
        url = self._live[node]
        body = {"sdp": sdp, "type": sdp_type, "owner": owner, "caller": caller}
        try:
            reply = await self._client.post(
                f"{url}/internal/phone/offer", json=body, headers=self._headers
            )
        except httpx.HTTPError as exc:
            log.warning("test phone: node %s did not answer (%s)", node, type(exc).__name__)
            raise CallRefused(Refusal.UNAVAILABLE) from None
        if reply.status_code != 200:
            raise _refusal(reply)
        return node, url, reply.json()

    async def hang_up(self, call_id: str) -> None:
        """End the call on its node (the page's 切る button, or leaving the page)."""
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        if call.watcher is not None:
            call.watcher.cancel()
        with contextlib.suppress(httpx.HTTPError):
            await self._client.post(
                f"{call.url}/internal/phone/{call_id}/hangup", headers=self._headers
            )

    async def refresh(self) -> None:
        """Read the live call nodes; forget calls whose node is gone or no longer has them
        (their end may never reach the bus: a node that died, an MQTT outage)."""
        try:
            self._live = await asyncio.to_thread(self._nodes)
        except Exception as exc:  # the database is away: keep what we knew
            log.warning("test phone: reading the call nodes failed: %s", type(exc).__name__)
            return
        placed = [c for c in self.calls.values() if c.node]
        for node in {c.node for c in placed}:
            held = await self._held_on(node) if node in self._live else set()
            for call in placed:
                settled = time.monotonic() - call.placed_at > SETTLE_S
                if call.node == node and held is not None and call.call_id not in held and settled:
                    self._forget(call)

    async def _held_on(self, node: str) -> set[str] | None:
        """The test-phone calls ``node`` holds now (None: it did not say)."""
        try:
            reply = await self._client.get(
                f"{self._live[node]}/internal/phone/calls", headers=self._headers
            )
            return set(reply.json()["calls"]) if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def _forget(self, call: RemotePhoneCall) -> None:
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]
            if call.watcher is not None:
                call.watcher.cancel()

    def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_often(), name="remote-phone")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *(c.watcher for c in self.calls.values())) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.calls.clear()
        await self._client.aclose()

    async def _refresh_often(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(REFRESH_S)

    async def _watch(self, call: RemotePhoneCall) -> None:
        """Forget the call once its end comes through the bus (or after the longest call)."""
        try:
            if self.bus is None:
                await asyncio.sleep(LONGEST_CALL_S)
                return
            subscription = self.bus.subscribe(call.call_id)
            try:
                async with asyncio.timeout(LONGEST_CALL_S):
                    async for event in subscription:
                        if event.get("event") == "call_ended":
                            break
            finally:
                subscription.close()
        except TimeoutError:
            pass
        finally:
            if self.calls.get(call.call_id) is call:
                del self.calls[call.call_id]


def _refusal(reply: httpx.Response) -> Exception:
    """The node's refusal as ``CallRefused`` (an unknown answer counts as unavailable)."""
    from telephony.webrtc_endpoint import CallRefused, Refusal

    detail: Any = None
    with contextlib.suppress(Exception):
        detail = reply.json().get("detail")
    if isinstance(detail, dict):
        with contextlib.suppress(ValueError):
            return CallRefused(Refusal(detail.get("reason")), str(detail.get("detail") or ""))
    log.warning("test phone: node answered %s", reply.status_code)
    return CallRefused(Refusal.UNAVAILABLE)
