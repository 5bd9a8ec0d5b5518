"""The web node's staff console: the consoles of every call node, seen and answered as one.

On a scaled-out service a transferred call rings on the call node that holds it, while
staff pages are served by the web node. ``RemoteStaffConsole`` gives the staff routes the
same face as a node's own ``StaffConsole`` (``calls``, ``subscribe``, ``answer``,
``hangup``): it follows each live call node's console events over the cluster's internal
HTTP (``dashboards/routes/node_console.py``, found through ``node_directory``), keeps
the merged call list, and relays a staff member's answer or hang-up to the node that
holds the call. The staff browser's audio then goes to that node directly.

A call node that stops answering drops out: its calls leave the staff pages (they are
over for staff, whatever the node's fate) and its stream is tried again with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from dashboards.db import Database
from dashboards.node_directory import live_consoles

log = logging.getLogger(__name__)

DISCOVER_S = 3.0  # how often the list of live call nodes is read
RETRY_S = (1.0, 2.0, 5.0, 10.0)  # back-off between attempts to follow a node's console
READ_TIMEOUT_S = 30.0  # a node's stream sends a heartbeat every 10 s
MAX_CALLS_PER_NODE = 500  # far above what a node holds; bounds what a node can make us keep
MAX_NODES = 64  # call nodes followed at most
MAX_EVENT_BYTES = 256 * 1024  # one console event (a handover summary is a few kilobytes)


@dataclass(frozen=True)
class RelayedAnswer:
    """The call node's SDP answer to a staff browser's offer."""

    sdp: str
    type: str


class RemoteStaffConsole:
    """Staff console of a web node: merges the call nodes' consoles and relays to them."""

    def __init__(
        self,
        db: Database,
        secret: str,
        *,
        nodes: Callable[[], dict[str, str]] | None = None,
        discover_s: float = DISCOVER_S,
    ):
        self._nodes = nodes or (lambda: live_consoles(db, secret))
        self._headers = {"Authorization": f"Bearer {secret}"}
        self.discover_s = discover_s
        self._calls: dict[str, dict[str, Any]] = {}  # call_id -> the call, with its node
        self._urls: dict[str, str] = {}  # node -> console URL
        self._follows: dict[str, asyncio.Task[None]] = {}
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        # Streams and relays apart: many followed nodes never hold up a staff answer.
        self._streams = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=3.0, read=READ_TIMEOUT_S),
            limits=httpx.Limits(max_connections=MAX_NODES),
        )
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=3.0))
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- what the staff pages read (as StaffConsole) -------------------------------------
    def calls(self) -> list[dict[str, Any]]:
        """Ringing and connected calls of every call node, oldest first."""
        return sorted(self._calls.values(), key=lambda c: c.get("ringing_since") or 0.0)

    def subscribe(self) -> Any:
        """Live console events of every node, each with its ``node``."""
        from telephony.staff_console import ConsoleSubscription

        subscription = ConsoleSubscription(self._listeners)
        if self._closed:  # shutting down: the stream ends at once
            ConsoleSubscription.end_all(self._listeners)
        return subscription

    async def answer(self, call_id: str, offer_sdp: str, offer_type: str, staff_user: str):
        """Relay a staff browser's offer to the node holding ``call_id``; its answer.

        Raises what a node's own console raises: ``ConsoleCallGone`` (also when the node
        cannot be reached: the call is over for staff), ``AlreadyAnswered``, or
        ``SignallingError`` for an offer the node refused.
        """
        from telephony.staff_console import AlreadyAnswered
        from telephony.webrtc import SignallingError

        body = {"sdp": offer_sdp, "type": offer_type, "staff_user": staff_user}
        reply = await self._relay(call_id, "answer", body)
        if reply.status_code == 200:
            data = reply.json()
            self._note_answered(call_id, staff_user)
            return RelayedAnswer(sdp=str(data["sdp"]), type=str(data["type"]))
        if reply.status_code == 409:
            raise AlreadyAnswered(f"call {call_id} was already answered")
        if reply.status_code == 400:
            raise SignallingError(_detail(reply))
        raise self._gone(call_id, reply)

    async def hangup(self, call_id: str, staff_user: str = "", admin: bool = True) -> None:
        """Relay 終話 to the node holding ``call_id``; the node itself checks that
        ``staff_user`` answered it (or ``admin``)."""
        body = {"staff_user": staff_user, "admin": admin}
        reply = await self._relay(call_id, "hangup", body)
        if reply.status_code == 403:
            raise PermissionError(f"call {call_id} was answered by someone else")
        if reply.status_code != 204:
            raise self._gone(call_id, reply)

    # -- running -------------------------------------------------------------------------
    def start(self) -> None:
        """Follow the call nodes in the background until ``close``."""
        self._task = asyncio.create_task(self._discover(), name="remote-console")

    async def drain(self, grace_s: float = 0.0) -> None:
        """Service shutdown: staff calls live on the call nodes, which drain them."""
        await self.close()

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._follows.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._follows.clear()
        self._urls.clear()
        self._closed = True
        await self._client.aclose()
        await self._streams.aclose()
        from telephony.staff_console import ConsoleSubscription

        ConsoleSubscription.end_all(self._listeners)

    async def _discover(self) -> None:
        while True:
            try:
                nodes = await asyncio.to_thread(self._nodes)
            except Exception as exc:  # the database is away: keep following what we have
                log.warning("staff console: reading the call nodes failed: %s", exc)
            else:
                self._update_nodes(nodes)
            await asyncio.sleep(self.discover_s)

    def _update_nodes(self, nodes: dict[str, str]) -> None:
        for node in list(self._follows):
            if nodes.get(node) != self._urls.get(node):
                self._follows.pop(node).cancel()
                self._urls.pop(node, None)
                self._drop_node(node, "node_lost")
        for node, url in nodes.items():
            if node not in self._follows and len(self._follows) < MAX_NODES:
                self._urls[node] = url
                self._follows[node] = asyncio.create_task(
                    self._follow(node, url), name=f"console-{node}"
                )

    async def _follow(self, node: str, url: str) -> None:
        """Follow one node's console events for as long as it is listed."""
        attempt = 0
        while True:
            try:
                async for kind, data in self._events(url):
                    attempt = 0
                    self._on_event(node, kind, data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                why = type(exc).__name__  # never the text: it may quote the request
                log.warning("staff console: node %s not followed (%s); retrying", node, why)
            self._drop_node(node, "node_lost")
            await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
            attempt += 1

    async def _events(self, url: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(event name, data) of a node's console stream, as they come."""
        async with self._streams.stream(
            "GET", f"{url}/internal/staff/events", headers=self._headers
        ) as response:
            response.raise_for_status()
            kind, data = "message", ""
            async for line in _bounded_lines(response.aiter_bytes(), MAX_EVENT_BYTES):
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                    if len(data) > MAX_EVENT_BYTES:
                        raise ValueError("console event too large")
                elif not line and data:
                    yield kind, json.loads(data)
                    kind, data = "message", ""

    def _on_event(self, node: str, kind: str, data: dict[str, Any]) -> None:
        if kind == "snapshot":
            fresh = {str(c["call_id"]): {**c, "node": node} for c in data.get("calls", [])}
            log.info("staff console: following node %s (%d call(s))", node, len(fresh))
            for call_id in [i for i, c in self._calls.items() if c["node"] == node]:
                if call_id not in fresh:
                    self._forget(call_id, "staff_ended", ended_by="node_lost")
            for call_id, call in list(fresh.items())[:MAX_CALLS_PER_NODE]:
                if call_id in self._calls and self._calls[call_id]["node"] != node:
                    continue  # another node's call
                self._calls[call_id] = call
                state = "staff_connected" if call.get("state") == "connected" else "staff_ringing"
                self._publish({"event": state, **call})
            return
        if kind != "console" or "call_id" not in data:
            return
        event = {**data, "node": node}
        call_id = str(event["call_id"])
        held = self._calls.get(call_id)
        if held is not None and held["node"] != node:
            return  # another node's call: one node never speaks for another's
        if event.get("event") in ("staff_ringing", "staff_connected", "staff_draining"):
            held = sum(1 for c in self._calls.values() if c["node"] == node)
            if call_id in self._calls or held < MAX_CALLS_PER_NODE:
                self._calls[call_id] = {k: v for k, v in event.items() if k != "event"}
        else:
            self._calls.pop(call_id, None)
        self._publish(event)

    def _drop_node(self, node: str, why: str) -> None:
        for call_id in [i for i, c in self._calls.items() if c["node"] == node]:
            self._forget(call_id, "staff_ended", ended_by=why)

    def _forget(self, call_id: str, kind: str, **extra: Any) -> None:
        call = self._calls.pop(call_id, None)
        if call is not None:
            self._publish({**call, "event": kind, "wall_time": time.time(), **extra})

    def _note_answered(self, call_id: str, staff_user: str) -> None:
        """Who answered, at once (the node's own event follows): 終話 checks it."""
        call = self._calls.get(call_id)
        if call is not None:
            call["answered_by"] = staff_user

    def _publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._listeners):
            if queue.full():  # a stalled page loses its oldest news
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    async def _relay(self, call_id: str, action: str, body: dict[str, Any] | None):
        """POST ``action`` for ``call_id`` to its node; ConsoleCallGone if none answers."""
        from telephony.staff_console import ConsoleCallGone

        call = self._calls.get(call_id)
        url = self._urls.get(call["node"]) if call is not None else None
        if call is None or url is None:
            raise ConsoleCallGone(f"call {call_id} is not ringing on any node")
        try:
            return await self._client.post(
                f"{url}/internal/staff/calls/{call_id}/{action}",
                json=body,
                headers=self._headers,
            )
        except httpx.HTTPError as exc:
            why = type(exc).__name__
            log.warning("staff console: node %s did not answer (%s)", call["node"], why)
            raise ConsoleCallGone(f"the node of call {call_id} cannot be reached") from None

    def _gone(self, call_id: str, reply: httpx.Response) -> Exception:
        from telephony.staff_console import ConsoleCallGone

        if reply.status_code != 404:
            log.warning("staff console: call %s: node said %s", call_id, reply.status_code)
        return ConsoleCallGone(f"call {call_id}: {_detail(reply)}")


def _detail(reply: httpx.Response) -> str:
    with contextlib.suppress(Exception):
        return str(reply.json().get("detail", reply.status_code))
    return str(reply.status_code)


async def _bounded_lines(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[str]:
    """Text lines of a byte stream, none longer than ``limit`` bytes (ValueError)."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        while (end := pending.find(b"\n")) >= 0:
            line, pending = pending[:end], pending[end + 1 :]
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        if len(pending) > limit:
            raise ValueError("line too long in a console stream")
