"""The bot's side of one SIP worker process: start it, talk to it, stop it.

A worker (telephony/sip_worker.py) is a child process running one pjsua; this object owns
the process and the Unix socket to it, runs on the bot's event loop, and routes each
message from the worker to the call it belongs to (``WorkerLeg.events``). Commands that
can fail (hang up, REFER) are awaited until the worker has carried them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from telephony.sip_wire import Decoder, Kind, decode_json, encode

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # a loaded CI machine starts Python and pjsua slowly
STOP_TIMEOUT_S = 15.0  # hanging up its calls takes the worker up to 5 s
# A command is carried out within one pjsua loop turn, or after the caller's ACK (at most
# 5 s): a worker that has not answered by then is stuck, and nobody waits for it for ever.
COMMAND_TIMEOUT_S = 30.0


class WorkerError(RuntimeError):
    """The worker did not start, or stopped while a command was under way."""


class LegEvents(Protocol):
    """What a call hears from its worker (on the event loop)."""

    def pcm_received(self, pcm: bytes) -> None: ...
    def dtmf_received(self, digit: str) -> None: ...
    def transfer_status(self, code: int, reason: str, final: bool) -> None: ...
    def disconnected(self, code: int, reason: str) -> None: ...
    def drained(self) -> None: ...


class WorkerLeg:
    """One answered call in one worker, as the bot's ``SipCallTransport`` drives it."""

    def __init__(self, link: WorkerLink, leg: int, sip_call_id: str):
        self.link = link
        self.leg = leg
        self.sip_call_id = sip_call_id
        self.events: LegEvents | None = None
        self.ended = False  # the worker said the call is over (its slot may still be held)
        # Why the call was cut off by the system rather than ended by SIP (the worker
        # died), or None: the call's record should not say the caller hung up.
        self.failure: str | None = None

    def play(self, pcm: bytes) -> None:
        """Queue 20 ms of bot audio in the worker."""
        self.link.send(Kind.AUDIO, self.leg, pcm)

    def drain(self) -> None:
        """Ask the worker to play out what is queued; ``events.drained()`` follows."""
        self.link.send(Kind.DRAIN, self.leg)

    async def hangup(self) -> None:
        await self.link.command(Kind.HANGUP, self.leg)

    async def refer(self, uri: str) -> None:
        await self.link.command(Kind.REFER, self.leg, uri=uri)


OnIncoming = Callable[[WorkerLeg, str], None]  # (leg, caller's From URI)


class WorkerLink(asyncio.Protocol):
    """One SIP worker process and the socket to it."""

    def __init__(
        self,
        index: int,
        config: dict[str, Any],
        on_incoming: OnIncoming,
        on_leg_ended: Callable[[WorkerLeg], None],  # the worker has let the call go
        on_exit: Callable[[WorkerLink], None],
    ):
        self.index = index
        self.config = {**config, "index": index}
        self.on_incoming = on_incoming
        self.on_leg_ended = on_leg_ended
        self.on_exit = on_exit
        self.address: tuple[str, int] | None = None  # the worker's private SIP address
        self.capacity = 0
        self.legs: dict[int, WorkerLeg] = {}
        self.process: asyncio.subprocess.Process | None = None
        self._transport: asyncio.Transport | None = None
        self._decoder = Decoder()
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._ids = itertools.count(1)
        self._closed = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self._transport is not None and not self._closed.is_set()

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Spawn the worker and wait until its pjsua listens; WorkerError if it does not."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "telephony.sip_worker",
                str(theirs.fileno()),
                json.dumps(self.config),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,  # pjlib's start-up banner; logs go to stderr
                env=env,
            )
        finally:
            theirs.close()
        self._ready = loop.create_future()
        await loop.create_unix_connection(lambda: self, sock=ours)
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT_S)
        except (TimeoutError, WorkerError) as exc:
            await self.stop()
            raise WorkerError(f"SIP worker {self.index} did not start: {exc}") from exc
        if "error" in ready:
            await self.stop()
            raise WorkerError(f"SIP worker {self.index}: {ready['error']}")
        self.address = (self.config["sip_host"], int(ready["port"]))
        self.capacity = int(ready["max_calls"])
        log.debug("SIP worker %d (pid %s) on %s:%d", self.index, self.pid, *self.address)

    async def stop(self) -> None:
        """SHUTDOWN (the worker hangs up what is left and exits); kill it if it hangs."""
        if self._transport is not None and not self._transport.is_closing():
            self.send(Kind.SHUTDOWN, 0, {})
        process = self.process
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.error("SIP worker %d did not stop; killing it", self.index)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process is not None and process.returncode not in (0, None):
            log.warning("SIP worker %d exited with %s", self.index, process.returncode)
        if self._transport is not None:
            self._transport.close()
            await self._closed.wait()

    # -- to the worker ----------------------------------------------------------------------------
    def send(self, kind: Kind, leg: int = 0, payload: bytes | dict[str, Any] = b"") -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.write(encode(kind, leg, payload))

    async def command(self, kind: Kind, leg: int, **args: Any) -> None:
        """Send a command and wait until the worker has carried it out."""
        if not self.alive:
            raise WorkerError("the SIP worker has stopped")
        request = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request] = future
        try:
            self.send(kind, leg, {"id": request, **args})
            await asyncio.wait_for(future, COMMAND_TIMEOUT_S)
        except TimeoutError:
            raise WorkerError(f"the SIP worker did not carry out {kind.name}") from None
        finally:
            self._pending.pop(request, None)

    # -- from the worker (asyncio.Protocol) --------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        for kind, leg, payload in self._decoder.feed(data):
            try:
                self._dispatch(kind, leg, payload)
            except Exception:
                log.exception("SIP worker %d: message %s failed", self.index, kind.name)

    def _dispatch(self, kind: Kind, key: int, payload: bytes) -> None:
        if kind is Kind.PCM:
            leg = self.legs.get(key)
            if leg is not None and leg.events is not None:
                leg.events.pcm_received(payload)
            return
        args = decode_json(payload)
        if kind is Kind.READY:
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(args)
            return
        if kind is Kind.RESULT:
            future = self._pending.get(args.get("id"))
            if future is not None and not future.done():
                if args.get("error"):
                    future.set_exception(WorkerError(args["error"]))
                else:
                    future.set_result(None)
            return
        if kind is Kind.INCOMING:
            leg = WorkerLeg(self, key, args.get("sip_call_id", ""))
            self.legs[key] = leg
            self.on_incoming(leg, args.get("caller", ""))
            return
        leg = self.legs.get(key)
        events = leg.events if leg is not None else None
        if kind is Kind.DISCONNECTED:
            # Twice per call: when it is over (the call hears it at once), and "released"
            # once pjsua has freed its slot (the owner hears it then, and may count the
            # slot free). One without "released" says both.
            if leg is not None and not leg.ended:
                leg.ended = True
                if events is not None:
                    events.disconnected(int(args.get("code", 0)), args.get("reason", ""))
            if args.get("released", True):
                self.legs.pop(key, None)
                if leg is not None:
                    self.on_leg_ended(leg)
        elif events is None:
            return
        elif kind is Kind.DTMF:
            events.dtmf_received(args["digit"])
        elif kind is Kind.TRANSFER_STATUS:
            events.transfer_status(int(args["code"]), args.get("reason", ""), bool(args["final"]))
        elif kind is Kind.DRAINED:
            events.drained()

    def connection_lost(self, exc: Exception | None) -> None:
        was_running = self.address is not None
        self._closed.set()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(WorkerError("the worker exited"))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WorkerError("the SIP worker has stopped"))
        legs, self.legs = self.legs, {}
        if was_running:
            # First, while the calls' routes are still known: the dispatcher ends each
            # call towards its caller (the dead worker cannot).
            self.on_exit(self)
        for leg in legs.values():
            if not leg.ended:
                leg.ended = True
                leg.failure = "SIP worker stopped"
                if leg.events is not None:
                    leg.events.disconnected(503, "SIP worker stopped")
            self.on_leg_ended(leg)
