"""The bot's SIP endpoint: a dispatcher on the public port, pjsua in worker processes.

pjsua takes at most four calls per process (telephony/sip_worker.py says why), so the
endpoint starts ``[sip] workers`` worker processes (by default enough for ``max_calls``,
four calls each) and the SIP dispatcher on the configured address
(telephony/sip_dispatcher.py), which checks the caller's address (403), hands each new
call to a worker with a free slot (503 when none is left) and keeps every later message of
the call with that worker. Each call a worker answers becomes a ``SipCallTransport`` here,
in the bot's process, and a task running ``on_call(transport, caller, call_id)``
(normally ``Switchboard.handle``).

pjsua itself answers 488 to offers without a usable codec and 400 to malformed SDP; the
dispatcher drops datagrams that do not parse as SIP.

While the service drains (SIGTERM: the switchboard stops taking calls and lets the calls in
progress finish), the dispatcher answers new INVITEs and OPTIONS probes 503 itself: before,
pjsua answered both (the probe 200, the INVITE 200 followed at once by a BYE when the
switchboard refused the call), so a proxy in front of several nodes kept sending callers
to a node that was going away.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from telephony.config import TelephonySettings
from telephony.sip_call import SipCallTransport
from telephony.sip_dispatcher import SipDispatcher, loopback_for
from telephony.sip_limits import SipLimits
from telephony.sip_message import SipParseError, uri_of
from telephony.sip_wire import PJSUA_MAX_CALLS
from telephony.sip_worker_link import WorkerError, WorkerLeg, WorkerLink
from voicebot.transport import CallTransport

log = logging.getLogger(__name__)

OnCall = Callable[[CallTransport, str | None, str], Awaitable[Any]]
SHUTDOWN_WAIT_S = 5.0
# RTP ports a worker needs at least: a pair per call, twice over for calls ending while
# others start.
MIN_RTP_PORTS_PER_WORKER = 4 * PJSUA_MAX_CALLS


class SipEndpointError(RuntimeError):
    """The SIP endpoint could not start (address in use, bad settings, no worker)."""


def caller_from_uri(remote_uri: str) -> str | None:
    """The caller as a bare URI: '"Taro" <sip:0312345678@pbx>' -> 'sip:0312345678@pbx'
    (a '<' inside the quoted display name is not taken for the URI's)."""
    try:
        uri = uri_of(remote_uri)
    except SipParseError:
        uri = remote_uri.strip()
    return uri or None


def rtp_port_block(index: int, workers: int, first: int, last: int) -> tuple[int, int]:
    """(first port, number of ports) of worker ``index``'s share of ``first``..``last``:
    each worker has its own block, so workers never take each other's ports."""
    share = (last - first + 1) // workers
    if share < MIN_RTP_PORTS_PER_WORKER:
        raise SipEndpointError(
            f"[sip] rtp_port_min..rtp_port_max ({first}..{last}) gives {workers} workers "
            f"{share} ports each; each needs {MIN_RTP_PORTS_PER_WORKER}"
        )
    return first + index * share, share


def media_bind_host(host: str, advertised: str) -> str:
    """The address the workers bind their RTP sockets to: the SIP host, or when that is a
    wildcard, the address put in the SDP if it is one of this machine's (so that media is
    not reachable on every interface); the wildcard if it is not (a public address
    behind NAT)."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    try:
        family = socket.AF_INET6 if ":" in advertised else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((advertised, 0))
    except OSError:
        log.warning(
            "SIP: RTP listens on every interface (%s is not an address of this host); "
            "set [sip] host to bind it to one",
            advertised,
        )
        return host
    return advertised


def owner_accepting(on_call: Callable[..., Any]) -> Callable[[], bool] | None:
    """``on_call``'s owner's ``accepting`` flag, read at each call (None if it has none).

    ``on_call`` is normally ``Switchboard.handle``, and the switchboard clears ``accepting``
    when the service starts to drain: reading it here lets the endpoint refuse new calls
    from that moment, not only once the calls in progress have ended.
    """
    owner = getattr(on_call, "__self__", None)
    if not isinstance(getattr(owner, "accepting", None), bool):
        return None
    return lambda: bool(owner.accepting)


def worker_count(max_calls: int, workers: int | None) -> int:
    """Workers to start: as configured, or enough for ``max_calls`` at four calls each."""
    return workers if workers else max(1, math.ceil(max_calls / PJSUA_MAX_CALLS))


class SipEndpoint:
    """Answers SIP calls for the bot. ``await start()``, ``await stop()``."""

    def __init__(
        self,
        settings: TelephonySettings,
        on_call: OnCall,
        staff_console: Any | None = None,
        limits: SipLimits | None = None,
        taking_calls: Callable[[], bool] | None = None,
    ):
        self.settings = settings
        # Whether the service takes new calls: given, or the ``accepting`` flag of the
        # object whose method ``on_call`` is (``Switchboard.handle``: False once it drains).
        self.taking_calls = taking_calls or owner_accepting(on_call)
        self.limits = limits or settings.sip.limits.to_limits()
        self.sip = settings.sip
        self.on_call = on_call
        self.staff_console = staff_console
        self.port: int | None = None  # the bound port (settings may say 0)
        self.calls_answered = 0
        self.dispatcher: SipDispatcher | None = None
        self.workers: list[WorkerLink] = []
        self.transports: dict[str, SipCallTransport] = {}
        self.worker_restarts = 0
        self._worker_config: dict[str, Any] = {}
        self._rtp_blocks: list[tuple[int, int]] = []  # each worker's (first RTP port, ports)
        self._tasks: set[asyncio.Task] = set()
        self._restarts: set[asyncio.Task] = set()
        self._stopping = False

    @property
    def uri(self) -> str:
        host = self.sip.public_host or self.sip.host
        return f"sip:{self.sip.user}@{host}:{self.port}"

    @property
    def accepting(self) -> bool:
        return self.dispatcher is not None and self.dispatcher.accepting

    @property
    def calls_rejected(self) -> int:
        """INVITEs refused by the endpoint itself (403 not allowed, 503 full or stopping)."""
        return self.dispatcher.rejected if self.dispatcher is not None else 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen and start the workers; raises SipEndpointError if that fails."""
        sip = self.sip
        dispatcher = SipDispatcher(
            sip.host,
            sip.port,
            allowed_peers=sip.allowed_peers,
            max_calls=sip.max_calls,
            public_host=sip.public_host,
            limits=self.limits,
            on_call_expired=self._on_call_expired,
            taking_calls=self.taking_calls,
        )
        try:
            self.port = await dispatcher.start()
        except OSError as exc:
            raise SipEndpointError(f"SIP endpoint failed to start: {exc}") from exc
        self.dispatcher = dispatcher
        self._worker_config = {
            "sip_host": loopback_for(sip.host),
            "media_host": media_bind_host(sip.host, dispatcher.advertised_host),
            "public_host": sip.public_host,
            "id_uri": self.uri,
            "dispatcher": dispatcher.seen_by_workers,
            "codecs": sip.codecs,
            "pjsip_log_level": sip.log_level,
            "log_level": logging.getLogger("telephony").getEffectiveLevel(),
            "media_timeout_s": self.limits.media_timeout_s,
        }
        count = worker_count(sip.max_calls, sip.workers)
        try:
            self._rtp_blocks = [
                rtp_port_block(i, count, sip.rtp_port_min, sip.rtp_port_max) for i in range(count)
            ]
        except SipEndpointError:
            await dispatcher.stop()
            self.dispatcher = None
            raise
        self.workers = [self._new_worker(i) for i in range(count)]
        started = await asyncio.gather(*(w.start() for w in self.workers), return_exceptions=True)
        failures = [r for r in started if isinstance(r, BaseException)]
        if failures:
            await self._stop_workers()
            await dispatcher.stop()
            self.dispatcher = None
            raise SipEndpointError(f"SIP endpoint failed to start: {failures[0]}")
        for worker in self.workers:
            dispatcher.add_worker(worker.index, worker.address, worker.capacity)
        log.info(
            "SIP endpoint listening on udp+tcp %s:%d as %s (%d calls in %d pjsua workers; "
            "peers allowed: %s)",
            sip.host,
            self.port,
            self.uri,
            dispatcher.capacity,
            count,
            ", ".join(sip.allowed_peers) or "none",
        )

    async def stop(self) -> None:
        """Refuse new calls, hang up any that are left, stop the workers and the port.

        The service drains the switchboard first, so normally no call is left here.
        """
        if self.dispatcher is None or self._stopping:
            return
        self._stopping = True
        self.dispatcher.accepting = False
        for transport in list(self.transports.values()):
            await transport.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=SHUTDOWN_WAIT_S)
        for restart in list(self._restarts):
            restart.cancel()
        await asyncio.gather(*self._restarts, return_exceptions=True)
        await self._stop_workers()
        await self.dispatcher.stop()
        log.info("SIP endpoint stopped")

    async def _stop_workers(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)

    # -- from the workers -----------------------------------------------------------------------
    def _on_incoming(self, leg: WorkerLeg, remote_uri: str) -> None:
        caller = caller_from_uri(remote_uri)
        transport = SipCallTransport(
            leg,
            uuid.uuid4().hex[:12],
            caller,
            self.settings.transfer,
            self.staff_console,
        )
        self.calls_answered += 1
        log.info(
            "SIP: call %s answered (worker %d, Call-ID %s)",  # never the caller's number
            transport.call_id,
            leg.link.index,
            leg.sip_call_id,
        )
        self._spawn(transport)

    def _on_leg_ended(self, leg: WorkerLeg) -> None:
        self.dispatcher.call_ended(leg.sip_call_id)

    def _on_call_expired(self, sip_call_id: str) -> None:
        """The dispatcher gave up a call's slot on a deadline: end the worker's leg too."""
        for worker in self.workers:
            for leg in list(worker.legs.values()):
                if leg.sip_call_id == sip_call_id:
                    task = asyncio.get_running_loop().create_task(self._hang_up_leg(leg))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _hang_up_leg(leg: WorkerLeg) -> None:
        try:
            await leg.hangup()
        except WorkerError as exc:
            log.warning("SIP: could not end call %s: %s", leg.sip_call_id, exc)

    def _new_worker(self, index: int) -> WorkerLink:
        first, ports = self._rtp_blocks[index]
        config = {**self._worker_config, "rtp_port": first, "rtp_ports": ports}
        return WorkerLink(
            index, config, self._on_incoming, self._on_leg_ended, self._on_worker_exit
        )

    def _on_worker_exit(self, worker: WorkerLink) -> None:
        self.dispatcher.remove_worker(worker.index)
        if self._stopping:
            return
        log.error(
            "SIP worker %d (pid %s) exited unexpectedly (status %s); its calls have ended; "
            "starting a new one",
            worker.index,
            worker.pid,
            worker.process.returncode if worker.process else None,
        )
        task = asyncio.get_running_loop().create_task(self._restart(worker.index))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, index: int) -> None:
        """A new worker in the place of one that died, so the endpoint keeps its capacity."""
        worker = self._new_worker(index)
        try:
            await worker.start()
        except WorkerError as exc:
            log.error("SIP worker %d could not be restarted: %s", index, exc)
            return
        except asyncio.CancelledError:
            await worker.stop()
            raise
        self.workers[index] = worker
        self.worker_restarts += 1
        self.dispatcher.add_worker(index, worker.address, worker.capacity)
        log.info("SIP worker %d restarted (pid %s)", index, worker.pid)

    # -- calls on the event loop ---------------------------------------------------------------
    def _spawn(self, transport: SipCallTransport) -> None:
        task = asyncio.get_running_loop().create_task(
            self._run_call(transport), name=f"sip-call-{transport.call_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_call(self, transport: SipCallTransport) -> None:
        self.transports[transport.call_id] = transport
        try:
            await self.on_call(transport, transport.caller, transport.call_id)
            if transport.handed_to_console and not transport.closed:
                await transport.wait_closed()  # the staff console bridges the audio now
        except Exception:
            log.exception("SIP call %s: the call handler failed", transport.call_id)
        finally:
            try:
                await transport.close()
            except Exception:
                log.exception("SIP call %s: hangup failed", transport.call_id)
            self.transports.pop(transport.call_id, None)
