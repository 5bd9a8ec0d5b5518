"""The bot's public SIP port: a Call-ID-sticky relay in front of the SIP workers.

One pjsua takes at most four calls and there is one pjsua per process (see
telephony/sip_worker.py), so the bot runs several worker processes on private loopback
ports and this dispatcher on the public address (UDP and TCP). To the PBX it looks like
one user agent:

* An initial INVITE goes to the worker with the most free slots (503 Service Unavailable
  when every slot is taken or the service is stopping); every later message with the same
  Call-ID goes to the same worker. While the service drains (``taking_calls`` says no)
  an OPTIONS outside a call is answered 503 here too, so that a proxy probing the node
  (Kamailio's dispatcher) sends new calls elsewhere while the calls in progress finish.
  Nothing from an address outside ``allowed_peers`` is read: its datagrams are dropped
  before parsing, except that a few INVITEs a second get a minimal 403 (top Via only,
  never larger than the INVITE, sent to the packet's source).
* Every message is parsed within fixed bounds (telephony/sip_message_limits.py); one
  that the dispatcher and a worker could read differently (a single-valued header twice,
  a bare CR or LF, a malformed value) gets 400 before anything is routed. A response is
  relayed only from a worker or an allowed peer, and only if its top Via carries a branch
  this dispatcher made (an HMAC under its secret).
* Requests are relayed statelessly (RFC 3261 16.11): the dispatcher adds its own Via (the
  branch derived from the sender's, so retransmissions, CANCEL and ACK match), decrements
  Max-Forwards, and on INVITEs to a worker adds a Record-Route, so that the worker's own
  requests in the dialog (BYE, REFER) come back through here. Responses are returned by
  their Via. The worker's Contact is rewritten to the public address, and the dispatcher's
  Record-Route is taken out of what the PBX sees.
* An initial INVITE handed to a worker is answered 100 Trying here at once (the worker's
  own 100 is not passed on: it is hop by hop), so that a proxy in front, which fails a
  call over to another node when nothing answers within a second or two, does not take a
  node whose worker is slow under load for a dead one. Having said it (RFC 3261 keeps
  this from stateless proxies because the sender then stops repeating the INVITE), the
  dispatcher repeats the INVITE to the worker itself until the worker says a word, and
  owes the caller a final answer: 503 when the worker dies or Timer B runs out first
  (telephony/sip_owed.py).
* Datagrams and TCP streams that do not parse as SIP are dropped (a TCP connection sending
  them is closed), as a SIP stack would.
* Nothing from the network is kept without a bound (telephony/sip_limits.py): a call ends
  here when its INVITE gets no final response (Timer B) or its 2xx no ACK (Timer H),
  routes are keyed by Call-ID and the caller's From tag (telephony/sip_routes.py), and TCP
  connections are capped, timed out and closed when their peer stops reading.
* A call's slot in its worker is given back only when the worker reports the call gone
  (``call_ended``: pjsua has released it) or answered its INVITE with a failure: a BYE's
  answer or a deadline ends the call here, but pjsua may hold it a while longer (waiting
  for an ACK before its BYE, or for the BYE's answer), and a new INVITE sent to that
  worker meanwhile would get 486 Busy Here from pjsua itself. A worker that never reports
  a call gone has its slot back after ``worker_release_s``.
* The dialog of each call that is up (the caller's Contact and Record-Route set, both
  tags, the worker's CSeq) is kept while its slot is held, so that when a worker dies
  (``remove_worker``) the dispatcher ends its calls towards the callers with a BYE of
  its own (retransmitted over UDP until answered): a caller is not left on a silent line.
* The bot never lets the far end steer a call elsewhere: REFER, INVITE with Replaces or
  Join, and NOTIFY outside a transfer the bot started are refused here, before a worker
  sees them (the workers refuse them too). An INVITE, UPDATE or PRACK whose Contact,
  Record-Route or SDP address names a host outside ``allowed_peers`` gets 403 (an ACK
  doing so is dropped), so that media and BYEs never go to a host of the sender's choice
  (telephony/sip_targets.py).

Media does not pass through here: the SDP names the worker's RTP address directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from telephony.sip_limits import SipLimits
from telephony.sip_message import (
    SipBadRequest,
    SipMessage,
    SipParseError,
    SipUri,
    Via,
    canonical,
    content_length,
    find_head_end,
    header_tag,
    minimal_response,
    parse_datagram,
    parse_head,
    parse_uri,
    parse_via,
    replace_uri_hostport,
    response_to,
    uri_of,
)
from telephony.sip_message_limits import (
    MAX_HEAD_BYTES,
    STRANGER_ANSWER_BURST,
    STRANGER_ANSWERS_PER_S,
    WORKER_MAX_MESSAGE_BYTES,
    ThrottledLog,
    TokenBucket,
)
from telephony.sip_owed import OwedAnswer, OwedAnswers
from telephony.sip_routes import CallRoutes, CallState, InviteKind, Route
from telephony.sip_targets import named_targets

log = logging.getLogger(__name__)

BRANCH_PREFIX = "z9hG4bK-tbd-"
BRANCH_DIGEST_HEX = 20  # the sender's branch, digested (same request -> same branch)
BRANCH_MAC_HEX = 16  # 64 bits of HMAC-SHA256 under the dispatcher's secret
PEER_CACHE = 4096  # source hosts whose allowed/not-allowed answer is remembered
# Requests the far end may send. REFER and SUBSCRIBE would let it steer or watch the bot's
# calls; NOTIFY is let through only for a transfer the bot itself started.
ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "PRACK", "NOTIFY")
REFUSED_METHODS = {"REFER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "REGISTER"}  # known, never allowed
TRANSFER_HEADERS = ("replaces", "join")  # an INVITE carrying one takes over another call
# The longest pjsua holds a call after the dispatcher has seen it end: a 2xx waits up to
# Timer H (64 x T1 = 32 s) for the ACK before pjsua can send its BYE, which then waits up
# to Timer F (32 s) for an answer. A worker that has not reported the call gone by then
# never will (it lost the call).
WORKER_RELEASE_S = 70.0
# A BYE the dispatcher sends for a dead worker's call goes again after these pauses (UDP,
# Timer E style) until the caller answers it.
BYE_RETRANSMIT_S = (0.5, 1.0, 2.0, 4.0)
STOP_REPEAT_S = 4.0  # how long a stopping dispatcher repeats 503s not yet acknowledged


def source_host(src_address: str) -> str:
    """'127.0.0.1:5060' or '[::1]:5060' -> the host part."""
    if src_address.startswith("["):
        return src_address[1 : src_address.index("]")]
    return src_address.rsplit(":", 1)[0] if src_address.count(":") == 1 else src_address


def loopback_for(host: str) -> str:
    """The loopback address of ``host``'s family (where the workers listen)."""
    try:
        return "::1" if ipaddress.ip_address(host).version == 6 else "127.0.0.1"
    except ValueError:
        return "127.0.0.1"


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _default_address() -> str:
    """This host's address towards the network (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass
class _Worker:
    key: Hashable
    address: tuple[str, int]
    capacity: int
    calls: set[str] = field(default_factory=set)  # Call-IDs of its calls in progress
    heard: set[str] = field(default_factory=set)  # ...whose INVITE it has answered at all
    # Calls over for the dispatcher that the worker has not yet reported gone: Call-ID ->
    # the monotonic time after which the slot is counted free anyway.
    ending: dict[str, float] = field(default_factory=dict)

    @property
    def slots_taken(self) -> int:
        return len(self.calls) + len(self.ending)


@dataclass
class _Dialog:
    """What it takes to end a call towards its caller when its worker cannot."""

    remote_target: str  # the caller's Contact URI (the BYE's Request-URI)
    route_set: list[str]  # Record-Route values of the INVITE as the caller's side sent them
    remote: str  # the caller's From (with its tag): the BYE's To
    local: str | None = None  # the To of the worker's 2xx (with its tag): the BYE's From
    next_cseq: int = 1  # above every CSeq the worker has used in the dialog


class SipDispatcher:
    """The public SIP listener (UDP and TCP) that hands calls to the SIP workers."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        allowed_peers: list[str],
        max_calls: int,
        public_host: str | None = None,
        limits: SipLimits | None = None,
        on_call_expired: Callable[[str], None] | None = None,
        worker_release_s: float = WORKER_RELEASE_S,
        taking_calls: Callable[[], bool] | None = None,
    ):
        self.host = host
        self.requested_port = port
        self.allowed_peers = allowed_peers
        self.max_calls = max_calls
        self.advertised_host = public_host or (_default_address() if _is_wildcard(host) else host)
        self.port: int | None = None
        self._accepting = True
        # Asked at each new call and probe: False while the service drains (SIGTERM).
        self.taking_calls = taking_calls
        self.rejected = 0  # initial INVITEs refused here (403 or 503)
        self.limits = limits or SipLimits()
        # Told the Call-ID of a call freed on a deadline, so its worker's side ends too.
        self.on_call_expired = on_call_expired
        self.worker_release_s = worker_release_s
        self._secret = os.urandom(16).hex()
        self.dropped_from_strangers = 0  # datagrams from outside allowed_peers, most unread
        self.dropped_malformed = 0  # messages that were not SIP or over a bound
        self.refused_malformed = 0  # requests answered 400 (duplicate headers, bare CR/LF...)
        self._allowed_key: tuple[str, ...] | None = None
        self._allowed_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._allowed_names: frozenset[str] = frozenset()  # entries that are host names
        self._peer_answers: dict[str, bool] = {}
        self._stranger_answers = TokenBucket(STRANGER_ANSWERS_PER_S, STRANGER_ANSWER_BURST)
        self._stranger_log = ThrottledLog(log)
        self._malformed_log = ThrottledLog(log)
        self._failure_log = ThrottledLog(log)
        # A flood of INVITEs, of refused requests or of TCP connects costs a line a minute.
        self._slot_log = ThrottledLog(log)
        self._refusal_log = ThrottledLog(log)
        self._deadline_log = ThrottledLog(log)
        self._release_log = ThrottledLog(log)
        self._tcp_log = ThrottledLog(log)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: dict[int, _TcpConnection] = {}
        self._connections_from: dict[str, int] = {}  # open TCP connections per source host
        self._calls_from: dict[str, int] = {}  # call slots held per source host
        self._next_connection = 1
        self._workers: dict[Hashable, _Worker] = {}
        self._worker_at: dict[tuple[str, int], _Worker] = {}
        self._routes = CallRoutes(self.limits)
        self._dialogs: dict[str, _Dialog] = {}  # Call-ID -> dialog, while its slot is held
        self._owed = OwedAnswers(2 * max_calls + 16, self.limits.timer_h_s)  # 503s owed
        self._byes: dict[str, asyncio.Event] = {}  # our BYEs' branches -> answered
        self.byes_sent = 0  # calls ended towards the caller because their worker died
        self._tasks: set[asyncio.Task] = set()
        self._deadlines: asyncio.Task | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        """Whether a new call may start here: not stopping, and the service not draining."""
        return self._accepting and (self.taking_calls is None or self.taking_calls())

    @accepting.setter
    def accepting(self, value: bool) -> None:
        self._accepting = value

    @property
    def answers_owed(self) -> int:
        """503s owed to callers told 100 Trying, or sent and not yet acknowledged."""
        return len(self._owed)

    @property
    def seen_by_workers(self) -> str:
        """The source address the workers see on the dispatcher's messages."""
        host = loopback_for(self.host) if _is_wildcard(self.host) else self.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def capacity(self) -> int:
        return min(self.max_calls, sum(w.capacity for w in self._workers.values()))

    @property
    def calls_in_progress(self) -> int:
        """Call slots taken now: INVITEs under way, calls up, and calls ended here that
        their worker has not yet reported gone (pjsua still counts them)."""
        return sum(w.slots_taken for w in self._workers.values())

    @property
    def free_slots(self) -> int:
        return max(0, self.capacity - self.calls_in_progress)

    @property
    def routes_kept(self) -> int:
        return len(self._routes)

    @property
    def connections_open(self) -> int:
        return len(self._connections)

    async def start(self) -> int:
        """Bind UDP and TCP on the same port; returns the port (settings may say 0)."""
        loop = asyncio.get_running_loop()
        attempts = 20 if self.requested_port == 0 else 1
        for attempt in range(attempts):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.requested_port)
            )
            port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await loop.create_server(
                    lambda: _TcpConnection(self, inbound=True), self.host, port, reuse_address=True
                )
            except OSError:
                udp.close()
                if attempt == attempts - 1:
                    raise
                continue  # a free UDP port may be taken on TCP: try another
            self._udp, self.port = udp, port
            self._deadlines = loop.create_task(self._watch_deadlines())
            return port
        raise OSError("no port free on both UDP and TCP")

    async def stop(self) -> None:
        self.accepting = False
        # 503s just sent for the workers stopped before this (UDP): repeated a few seconds
        # more until acknowledged, so that a lost one does not leave the proxy in front
        # waiting out its own timer.
        deadline = time.monotonic() + STOP_REPEAT_S
        while (
            self._owed.sending()
            and self._udp is not None
            and not self._udp.is_closing()
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.1)
            self._repeat_owed(time.monotonic())
        if self._deadlines is not None:
            self._deadlines.cancel()
            self._deadlines = None
        for task in list(self._tasks):
            task.cancel()
        if self._tcp is not None:
            self._tcp.close()
        for connection in list(self._connections.values()):
            connection.drop("stopping")
        if self._tcp is not None:
            await self._tcp.wait_closed()
        if self._udp is not None:
            self._udp.close()
        self._tcp = self._udp = None

    # -- workers ----------------------------------------------------------------------------------
    def add_worker(self, key: Hashable, address: tuple[str, int], capacity: int) -> None:
        worker = _Worker(key, address, capacity)
        self._workers[key] = worker
        self._worker_at[address] = worker

    def remove_worker(self, key: Hashable) -> None:
        """A worker has gone: its calls are over, its Call-IDs route nowhere. Each of its
        calls that was answered is ended towards the caller with a BYE from here (the
        worker, killed or crashed, cannot send one; the caller would hear silence until
        it hung up itself)."""
        worker = self._workers.pop(key, None)
        if worker is None:
            return
        self._worker_at.pop(worker.address, None)
        for route in self._routes.of_worker(key):
            self._fail_owed(route)
            dialog = self._dialogs.pop(route.call_id, None)
            if route.holds_slot:
                self._count_down(self._calls_from, route.source)
                answered = route.state in (CallState.ANSWERED, CallState.CONFIRMED)
                if answered and dialog is not None and dialog.local is not None:
                    self._spawn(self._bye_to_caller(route, dialog))
            self._routes.remove(route)

    def call_ended(self, call_id: str) -> None:
        """A worker reports a call gone (pjsua has released it): its slot is free; stray
        retransmissions still route."""
        route = self._routes.get(call_id)
        if route is not None:
            self._release(route, worker_gone=True)
            return
        for worker in self._workers.values():  # the route has been forgotten already
            worker.ending.pop(call_id, None)

    def _release(self, route: Route, *, worker_gone: bool = False) -> None:
        """The call is over here. Its slot in the worker is free at once if the worker
        no longer has the call (``worker_gone``), else once it says so (``call_ended``)."""
        now = time.monotonic()
        if self._routes.end(route, now):
            self._count_down(self._calls_from, route.source)
        self._dialogs.pop(route.call_id, None)
        self._owed.forget(route.call_id)
        worker = self._workers.get(route.worker)
        if worker is None:
            return
        call_id = route.call_id
        # Not a word from the worker about the INVITE: pjsua dropped it or never had it.
        held = not worker_gone and call_id in worker.heard
        worker.heard.discard(call_id)
        if held and call_id in worker.calls:
            worker.ending[call_id] = now + self.worker_release_s
        elif not held:
            worker.ending.pop(call_id, None)
        worker.calls.discard(call_id)

    @staticmethod
    def _count_down(counts: dict[str, int], key: str) -> None:
        left = counts.get(key, 0) - 1
        if left > 0:
            counts[key] = left
        else:
            counts.pop(key, None)

    async def _watch_deadlines(self) -> None:
        """Frees what has outlived its deadline, whether or not anything arrives."""
        while True:
            await asyncio.sleep(self.limits.tick_s)
            try:
                self.enforce_deadlines()
            except Exception:
                log.exception("SIP: checking deadlines failed")

    def enforce_deadlines(self) -> None:
        """Call slots past Timer B / Timer H / the longest call, and idle, stalled or
        unread TCP connections."""
        now = time.monotonic()
        for route, why in self._routes.overdue(now):
            self._deadline_log.log(
                logging.WARNING, "SIP: call of Call-ID %s given up: %s", route.call_id, why
            )
            self._give_up(route)
        for address, relayed in self._owed.unheard_due(now):
            self._send_udp(relayed, address)  # the worker has not said a word: again
        for worker in self._workers.values():
            for call_id, deadline in list(worker.ending.items()):
                if deadline < now:
                    self._release_log.log(
                        logging.WARNING,
                        "SIP: worker %s never reported the end of Call-ID %s; its slot is free",
                        worker.key,
                        call_id,
                    )
                    del worker.ending[call_id]
        self._repeat_owed(now)
        in_use = self._routes.connections_in_use()
        for connection in list(self._connections.values()):
            why = connection.overdue(now, self.limits, connection.id in in_use)
            if why:
                connection.drop(why)

    def _give_up(self, route: Route) -> None:
        """A call past a deadline: the caller's 503 if it is owed one, the slot freed, the
        worker's side ended."""
        self._fail_owed(route)
        self._release(route)
        if self.on_call_expired is not None:
            self.on_call_expired(route.call_id)

    def _pick_worker(self) -> _Worker | None:
        if self.calls_in_progress >= self.max_calls:
            return None
        free = [w for w in self._workers.values() if w.slots_taken < w.capacity]
        return min(free, key=lambda w: w.slots_taken / w.capacity) if free else None

    # -- messages in ------------------------------------------------------------------------------
    def datagram(self, data: bytes, source: tuple[str, int]) -> None:
        """One UDP datagram: a SIP message, or something to drop.

        The source is checked before a byte is read: only a worker's or an allowed peer's
        datagram is parsed (within the bounds of telephony/sip_message_limits.py). A
        stranger's is dropped unread, except that a few INVITEs a second get a minimal 403.
        """
        source = (source[0], source[1])
        if source not in self._worker_at and not self.peer_allowed(source[0]):
            self._refuse_stranger(data, source)
            return
        try:
            message = parse_datagram(data)
        except SipBadRequest as exc:
            self.refuse_malformed(exc, source, None)
            return
        except SipParseError as exc:
            if data.strip():
                self.dropped_malformed += 1
                self._malformed_log.log(
                    logging.INFO, "SIP: dropped %d bytes from %s:%d (%s)", len(data), *source, exc
                )
            return
        self.handle(message, source, None)

    def peer_allowed(self, host: str) -> bool:
        """``host`` (an address) is in ``allowed_peers``. The networks are parsed once, and
        the answer for a host is remembered (at most PEER_CACHE hosts, then forgotten at
        once), so that a packet or a TCP connect from a stranger costs a dictionary lookup
        and no log line."""
        self._parse_allowed_peers()
        answer = self._peer_answers.get(host)
        if answer is None:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                answer = False
            else:
                answer = any(address in network for network in self._allowed_networks)
            if len(self._peer_answers) >= PEER_CACHE:
                self._peer_answers.clear()  # spoofed sources: bounded, never grows
            self._peer_answers[host] = answer
        return answer

    def host_allowed(self, host: str) -> bool:
        """``host``, named in a message, is in ``allowed_peers``: an address inside an
        allowed network, or a host name listed exactly (names are never resolved here)."""
        return self.peer_allowed(host) or host.lower().rstrip(".") in self._allowed_names

    def _foreign_target(self, message: SipMessage) -> str | None:
        """Why a request from the far end would make the bot send elsewhere than to an
        allowed peer (its Contact, Record-Route or SDP names another host), or None."""
        for where, host in named_targets(message):
            if not self.host_allowed(host):
                return f"{where} names a host outside allowed_peers"
        return None

    def _parse_allowed_peers(self) -> None:
        """Networks and host names of ``allowed_peers``, parsed again only when the list
        changes. An entry that is no address or network is a host name: it never matches
        a packet's source, only a host named in a Contact, Record-Route or SDP."""
        peers = tuple(self.allowed_peers)
        if peers == self._allowed_key:
            return
        self._allowed_key = peers
        self._allowed_networks = []
        self._peer_answers = {}
        names = set()
        for entry in peers:
            try:
                self._allowed_networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.strip().lower().rstrip("."))
        self._allowed_names = frozenset(names)
        if names:
            log.info(
                "SIP: allowed_peers %s are host names: never matched as a source address",
                ", ".join(sorted(names)),
            )

    def _refuse_stranger(self, data: bytes, source: tuple[str, int]) -> None:
        """A datagram from outside ``allowed_peers``: dropped unread. An INVITE, while the
        token bucket allows, is read and answered 403 with the smallest response that
        matches it (top Via only), sent to the packet's source and never larger than the
        request, so that a forged source address gains an attacker nothing."""
        self.dropped_from_strangers += 1
        if not data.startswith(b"INVITE ") or not self._stranger_answers.take():
            return
        try:
            message = parse_datagram(data)
        except SipParseError:
            return
        if message.to_tag is None:
            self.rejected += 1
        self._stranger_log.log(
            logging.WARNING, "SIP: INVITE from %s:%d refused (not an allowed peer)", *source
        )
        tag = self._tag(message)
        response = minimal_response(message, 403, "Forbidden", tag).to_bytes()
        if len(response) <= len(data):
            self._send_udp(response, source)

    def refuse_malformed(
        self, error: SipBadRequest, source: tuple[str, int], connection: _TcpConnection | None
    ) -> None:
        """A message from a worker or an allowed peer that parsed but must not be relayed
        (two Call-IDs, a bare CR/LF, a malformed value): a request gets 400, before
        anything is routed; a response is dropped."""
        message = error.message
        self.refused_malformed += 1
        self._malformed_log.log(
            logging.INFO, "SIP: refused a message from %s:%d (%s)", *source, error.reason
        )
        if not message.is_request:
            return
        try:
            self._stamp_sender(message, source)
            self._respond(message, 400, f"Bad Request ({error.reason})", connection)
        except SipParseError:
            pass

    def handling_failed(self, source: tuple | None) -> None:
        """A message raised something unexpected (a bug, since the parser raises only
        SipParseError): logged with its traceback at most once a minute, so that no
        sender can fill the log with them."""
        self._failure_log.log(
            logging.ERROR, "SIP: failed to handle a message from %s", source, exc_info=True
        )

    def handle(
        self, message: SipMessage, source: tuple[str, int], connection: _TcpConnection | None
    ) -> None:
        source = (source[0], source[1])
        worker = self._worker_at.get(source) if connection is None else None
        if worker is None and not self.peer_allowed(source[0]):
            # Inbound TCP from strangers is refused on connect: this is a connection the
            # dispatcher dialled to an address outside allowed_peers. Nothing it sends is
            # relayed (a forged response must never reach a worker).
            self.dropped_from_strangers += 1
            return
        try:
            if not message.is_request:
                self._relay_response(message, worker)
            elif worker is not None:
                self._spawn(self._relay_request_out(message, worker, source))
            else:
                self._relay_request_in(message, source, connection)
        except SipParseError as exc:
            log.debug("SIP: dropped a message from %s:%d (%s)", *source, exc)

    def _stamp_sender(self, message: SipMessage, source: tuple[str, int]) -> Via:
        """received/rport on the sender's Via (RFC 3261 18.2.1, RFC 3581)."""
        via = parse_via(message.get("via") or "")
        via.set_param("received", source[0])
        if via.param("rport") is not None:
            via.set_param("rport", str(source[1]))
        message.replace_first("via", str(via))
        return via

    def _relay_request_in(
        self, message: SipMessage, source: tuple[str, int], connection: _TcpConnection | None
    ) -> None:
        """A request from outside (the PBX) to one of the workers."""
        sender = self._stamp_sender(message, source)
        initial_invite = message.method == "INVITE" and message.to_tag is None
        if self._refused_in(message, source, connection, initial_invite):
            return
        if message.method == "ACK" and self._owed.acknowledged(message.call_id, message.to_tag):
            return  # the caller took the 503 sent here
        if initial_invite:
            failed = self._owed.repeated_invite(
                message.call_id,
                sender.param("branch"),
                source[0],
                header_tag(message.get("from")),
                message.cseq_number,
            )
            if failed is not None:
                self._send_owed(failed)
                return
        own = self._own_via("UDP", sender, connection, message)
        if self._too_large_in(message, source, connection, initial_invite, own):
            return
        if initial_invite:
            worker = self._admit_invite(message, sender, connection, source)
        else:
            worker = self._worker_in_dialog(message, connection)
        if worker is None:
            return
        calling = False
        if initial_invite:
            route = self._routes.get(message.call_id)
            calling = route is not None and route.state is CallState.CALLING
            if calling:
                # A retransmission once the worker has answered is the worker's to answer
                # again (pjsua repeats its final response); the dialog kept stays.
                self._keep_dialog(message)
                self._owe_answer(message, connection)
            message.prepend("Record-Route", self._own_uri)
        message.prepend("Via", str(own))
        data = message.to_bytes()
        if calling:
            # Told 100 Trying, the caller's side no longer repeats the INVITE: until the
            # worker says a word, the dispatcher does (over loopback UDP it may be lost).
            self._owed.relayed(message.call_id, data, worker.address, time.monotonic())
        self._send_udp(data, worker.address)

    def _refused_in(
        self,
        message: SipMessage,
        source: tuple[str, int],
        connection: _TcpConnection | None,
        initial_invite: bool,
    ) -> bool:
        """Refuse a request from a stranger, one that loops, or one no worker may take;
        True if it was answered here."""
        method = message.method
        if not self.peer_allowed(source[0]):
            if initial_invite:
                self.rejected += 1
                self._stranger_log.log(
                    logging.WARNING, "SIP: INVITE from %s:%d refused (not an allowed peer)", *source
                )
            self._respond(message, 403, "Forbidden", connection)
            return True
        if not self._decrement_max_forwards(message):
            self._respond(message, 483, "Too Many Hops", connection)
            return True
        self._pop_own_route(message)
        refusal = self._transfer_refusal(message)
        if refusal is not None:
            self._refusal_log.log(
                logging.WARNING, "SIP: %s from %s:%d refused (%s)", method, *source, refusal[2]
            )
            self._respond(message, refusal[0], refusal[1], connection, allow=refusal[0] == 405)
            return True
        foreign = self._foreign_target(message)
        if foreign is not None:
            # Before a slot is taken; an ACK is dropped (nothing answers an ACK).
            if initial_invite:
                self.rejected += 1
            self._refusal_log.log(
                logging.WARNING, "SIP: %s from %s:%d refused (%s)", method, *source, foreign
            )
            self._respond(message, 403, "Forbidden", connection)
            return True
        return False

    def _too_large_in(
        self,
        message: SipMessage,
        source: tuple[str, int],
        connection: _TcpConnection | None,
        initial_invite: bool,
        own: Via,
    ) -> bool:
        """Refuse a request a worker could not read once relayed; True if refused."""
        size = len(message.to_bytes()) + len(f"Via: {own}\r\n".encode())
        if initial_invite:
            size += len(f"Record-Route: {self._own_uri}\r\n")
        if size <= WORKER_MAX_MESSAGE_BYTES:
            return False
        # pjsua would drop it unanswered (after it had taken a slot): refused here.
        if initial_invite:
            self.rejected += 1
        self._refusal_log.log(
            logging.WARNING,
            "SIP: %s from %s:%d refused (%d bytes to relay, over the %d a worker reads)",
            message.method, *source, size, WORKER_MAX_MESSAGE_BYTES,
        )  # fmt: skip
        self._respond(message, 513, "Message Too Large", connection)
        return True

    def _worker_in_dialog(
        self, message: SipMessage, connection: _TcpConnection | None
    ) -> _Worker | None:
        """The worker holding the dialog of an in-dialog request (OPTIONS: any worker);
        None if the request was answered here or needs no answer."""
        method = message.method
        route = self._routes.get(message.call_id)
        worker = self._workers.get(route.worker) if route is not None else None
        if route is not None and route.from_tag != header_tag(message.get("from")):
            worker = None  # another dialog's Call-ID: not this caller's call
        if worker is None:
            if method == "ACK":
                return None  # nothing to acknowledge here
            if method != "OPTIONS":
                self._respond(message, 481, "Call/Transaction Does Not Exist", connection)
                return None
            # Any worker answers a probe, unless no new call may start here: then 503, so
            # that a probing proxy stops sending calls to this node until it takes them.
            worker = next(iter(self._workers.values()), None) if self.accepting else None
            if worker is None:
                self._respond(message, 503, "Service Unavailable", connection)
            return worker
        if method == "NOTIFY" and not route.refer_sent:
            self._respond(message, 481, "Subscription Does Not Exist", connection)
            return None
        if method == "ACK" and route.state is CallState.ANSWERED:
            self._routes.set_state(route, CallState.CONFIRMED, time.monotonic())
        if method == "CANCEL":
            # Never past a CANCEL: a copy of the INVITE sent after it would be a new call
            # to pjsua, answered for a caller who has gone. If pjsua never had the INVITE
            # (it answers the CANCEL 481), Timer B ends the call here.
            self._owed.stop_relaying(message.call_id)
        return worker

    def _keep_dialog(self, invite: SipMessage) -> None:
        """The caller's side of a new call's dialog, as its initial INVITE gives it."""
        try:
            target = uri_of(invite.get("contact") or "")
        except SipParseError:
            return  # no Contact: nowhere to send a BYE (the caller's timers end the call)
        self._dialogs[invite.call_id] = _Dialog(
            remote_target=target,
            route_set=invite.get_all("record-route"),
            remote=invite.get("from") or "",
        )

    async def _next_hop(
        self, uri: SipUri, route: Route | None
    ) -> tuple[str, int, _TcpConnection | None]:
        """Where a request towards the caller's side goes: its address and port, and the
        TCP connection to use (the call's own if it came on one; a new one if the URI asks
        for TCP), or None for UDP."""
        connection = None
        if route is not None and route.connection is not None and uri.transport in (None, "TCP"):
            connection = self._connections.get(route.connection)
        host = uri.host
        if not _is_ip(host):
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM),
                self.limits.tcp_message_s,
            )
            host = infos[0][4][0]
        port = uri.port or 5060
        if connection is None and uri.transport == "TCP":
            connection = await asyncio.wait_for(
                self._connect(host, port), self.limits.tcp_message_s
            )
        return host, port, connection

    async def _bye_to_caller(self, route: Route, dialog: _Dialog) -> None:
        """End a dead worker's call towards the caller: a BYE in the worker's place (its
        tag, a CSeq above the worker's), along the caller's route set, over the call's TCP
        connection if it came on one, else over UDP, sent again until it is answered."""
        next_hop = uri_of(dialog.route_set[0]) if dialog.route_set else dialog.remote_target
        uri = parse_uri(next_hop)
        host, port, connection = await self._next_hop(uri, route)
        seed = f"{route.call_id}|{dialog.next_cseq}|bye|{os.urandom(8).hex()}"
        digest = hashlib.sha1(f"{self._secret}|{seed}".encode()).hexdigest()
        branch = self._branch(digest[:BRANCH_DIGEST_HEX], "")
        via = Via("TCP" if connection else "UDP", self.advertised_host, self.port, [])
        via.set_param("branch", branch)
        lines = [
            f"BYE {dialog.remote_target} SIP/2.0",
            f"Via: {via}",
            *(f"Route: {value}" for value in dialog.route_set),
            "Max-Forwards: 70",
            f"From: {dialog.local}",
            f"To: {dialog.remote}",
            f"Call-ID: {route.call_id}",
            f"CSeq: {dialog.next_cseq} BYE",
            'Reason: SIP;cause=503;text="Service Unavailable"',
            "Content-Length: 0",
        ]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        self.byes_sent += 1
        log.warning("SIP: call %s ended towards the caller (its worker died)", route.call_id)
        if connection is not None:
            connection.send(data)
            return
        answered = self._byes[branch] = asyncio.Event()
        try:
            for pause in (*BYE_RETRANSMIT_S, None):
                self._send_udp(data, (host, port))
                if pause is None:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answered.wait(), pause)
                if answered.is_set():
                    break
        finally:
            self._byes.pop(branch, None)

    def _transfer_refusal(self, message: SipMessage) -> tuple[int, str, str] | None:
        """(status, reason, why) if the far end's request must not reach a worker: a method
        the bot does not take, or an INVITE that would replace or join another call."""
        method = message.method
        if method in REFUSED_METHODS:
            return 405, "Method Not Allowed", "method not allowed"
        if method not in ALLOWED_METHODS:
            return 501, "Not Implemented", "unknown method"
        if method == "INVITE":
            required = ",".join(message.get_all("require")).lower().split(",")
            if any(message.get(h) is not None for h in TRANSFER_HEADERS) or any(
                option.strip() in TRANSFER_HEADERS for option in required
            ):
                return 403, "Forbidden", "a call transfer by the far end"
        if method == "NOTIFY" and not (message.get("event") or "").strip().lower().startswith(
            "refer"
        ):
            return 481, "Subscription Does Not Exist", "NOTIFY for no subscription"
        return None

    def _admit_invite(
        self,
        message: SipMessage,
        sender: Via,
        connection: _TcpConnection | None,
        source: tuple[str, int],
    ) -> _Worker | None:
        """The worker for an initial INVITE (a slot taken, or the one a retransmission
        already has), or None once it has been answered here (503, 482)."""
        call_id = message.call_id
        from_tag = header_tag(message.get("from"))
        branch = sender.param("branch") or ""
        try:
            cseq = int((message.get("cseq") or "").split()[0])
        except (ValueError, IndexError):
            self._respond(message, 400, "Bad CSeq", connection)
            return None
        kind, known = self._routes.classify(call_id, from_tag, branch, cseq)
        if kind is InviteKind.RETRANSMISSION:
            worker = self._workers.get(known.worker)
            if known.answered_here:
                return None  # answered 503 here (acknowledged, or given up repeating)
            if worker is None:
                self._respond(message, 481, "Call/Transaction Does Not Exist", connection)
            return worker
        if kind is InviteKind.CONFLICT:
            self._refusal_log.log(
                logging.WARNING, "SIP: INVITE from %s:%d refused (Call-ID already in use)", *source
            )
            self._respond(message, 482, "Loop Detected", connection)
            return None
        cap = self.limits.max_calls_per_source
        over_cap = cap > 0 and self._calls_from.get(source[0], 0) >= cap
        worker = self._pick_worker() if self.accepting and not over_cap else None
        now = time.monotonic()
        route = None
        if worker is not None:
            route = Route(
                call_id, from_tag, branch, cseq, worker.key,
                connection.id if connection else None, CallState.CALLING, now, now,
                source=source[0],
            )  # fmt: skip
        if route is None or not self._routes.add(route):
            self.rejected += 1
            if over_cap:
                why = "calls from this address at max_calls_per_source"
            else:
                why = "no free call slot" if self.accepting else "shutting down"
            self._slot_log.log(logging.WARNING, "SIP: INVITE from %s:%d refused (%s)", *source, why)
            self._respond(message, 503, "Service Unavailable", connection)
            return None
        worker.calls.add(call_id)
        self._calls_from[source[0]] = self._calls_from.get(source[0], 0) + 1
        return worker

    async def _relay_request_out(
        self, message: SipMessage, worker: _Worker, source: tuple[str, int]
    ) -> None:
        """A request from a worker (BYE, REFER, re-INVITE) to the far end of its dialog."""
        sender = self._stamp_sender(message, source)
        if not self._decrement_max_forwards(message):
            return
        self._pop_own_route(message)
        next_hop = uri_of(message.get("route") or message.request_uri)
        uri = parse_uri(next_hop)
        self._rewrite_contact(message)
        route = self._routes.get(message.call_id)
        if route is not None and message.method == "REFER":
            route.refer_sent = True  # the far end's NOTIFYs about it may come in
        dialog = self._dialogs.get(message.call_id)
        if dialog is not None and route is not None and route.worker == worker.key:
            dialog.next_cseq = max(dialog.next_cseq, message.cseq_number + 1)
        host, port, connection = await self._next_hop(uri, route)
        own = self._own_via("TCP" if connection else "UDP", sender, None, message)
        own.set_param("rport", None)
        message.prepend("Via", str(own))
        if connection is not None:
            connection.send(message.to_bytes())
        else:
            self._send_udp(message.to_bytes(), (host, port))

    def _relay_response(self, message: SipMessage, worker: _Worker | None) -> None:
        top = parse_via(message.get("via") or "")
        if not self.sent_through_here(top):
            self._malformed_log.log(logging.INFO, "SIP: dropped a response not sent through here")
            return
        answered = self._byes.get(top.param("branch") or "")
        if answered is not None and message.status >= 200:
            answered.set()  # the caller answered a BYE sent here for a dead worker
        message.remove_first("via")
        nxt_text = message.get("via")
        if nxt_text is None:
            return
        nxt = parse_via(nxt_text)
        address = nxt.reply_address()
        if worker is None:  # from outside, back to the worker that sent the request
            if address in self._worker_at:
                self._end_on_bye_response(message)
                self._send_udp(message.to_bytes(), address)
            return
        # From a worker, out to the PBX.
        own_rr = self._own_uri
        for i, (key, value) in enumerate(message.headers):
            if canonical(key) == "record-route" and value == own_rr:
                del message.headers[i]
                break
        self._rewrite_contact(message)
        if not self._worker_answer_goes_on(message, worker, nxt):
            return
        self._end_on_bye_response(message)
        tcp_id = top.param("tbc")
        connection = self._connections.get(int(tcp_id)) if tcp_id else None  # MAC-checked
        if connection is None and nxt.transport == "TCP":
            connection = self._connection_to(address)
        if connection is not None:
            connection.send(message.to_bytes())
        elif nxt.transport == "TCP":
            self._spawn(self._send_tcp_new(message.to_bytes(), address))
        else:
            self._send_udp(message.to_bytes(), address)

    def _worker_answer_goes_on(self, message: SipMessage, worker: _Worker, nxt: Via) -> bool:
        """A worker's response, as it bears on its call's route; False if it stays here."""
        route = self._routes.get(message.call_id)
        if (
            route is None
            or message.method != "INVITE"
            or route.worker != worker.key
            or message.cseq_number != route.invite_cseq
            or (nxt.param("branch") or "") != route.branch
        ):
            return True  # not the answer to the call's own INVITE
        if route.call_id in worker.calls:
            worker.heard.add(route.call_id)  # pjsua has the call (until it reports it gone)
            self._owed.stop_relaying(route.call_id)  # the worker has it: not sent again
        if message.status == 100:
            return False  # hop by hop: the caller's side had its 100 Trying from here
        if message.status < 200 and route.answered_here:
            # After the caller's 503 from here: pjsua has the call after all; it ends.
            if self.on_call_expired is not None:
                self.on_call_expired(message.call_id)
            return False
        if message.status < 200:
            return True
        if route.state is not CallState.ENDED:
            self._owed.settle(route.call_id, route.branch)  # the worker's answer goes
        if message.status >= 300:
            self._release(route, worker_gone=True)  # pjsua refused it: no call there
            # The caller had its 503 from here: not a second final answer.
            return not route.answered_here
        if route.state is CallState.CALLING:
            self._routes.set_state(route, CallState.ANSWERED, time.monotonic())
            dialog = self._dialogs.get(route.call_id)
            if dialog is not None:
                dialog.local = message.get("to")
        elif route.state is CallState.ENDED:
            # Answered after the slot was given up (Timer B) or after the call ended: not
            # relayed; the worker's side of the call is ended.
            log.info("SIP: answer for the ended call %s dropped", message.call_id)
            if self.on_call_expired is not None:
                self.on_call_expired(message.call_id)
            return False
        return True

    def _end_on_bye_response(self, message: SipMessage) -> None:
        """A final response to a BYE (either way) ends the call here; its slot in the
        worker is free once the worker reports the call gone. Not before the INVITE is
        answered: a BYE then is no call's (the worker answers it 481) and the call goes on."""
        if message.method == "BYE" and message.status >= 200:
            route = self._routes.get(message.call_id)
            if route is not None and route.holds_slot and route.state is not CallState.CALLING:
                self._release(route)

    # -- helpers ----------------------------------------------------------------------------------
    @property
    def _own_hostport(self) -> str:
        host = self.advertised_host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def _own_uri(self) -> str:
        return f"<sip:{self._own_hostport};lr>"

    def _own_via(
        self,
        transport: str,
        sender: Via,
        connection: _TcpConnection | None,
        message: SipMessage,
    ) -> Via:
        """Our Via; its branch is derived from the sender's (RFC 3261 16.11), so that a
        retransmission, the CANCEL and the ACK of a failed INVITE map to the same branch."""
        seed = sender.param("branch") or ""
        if not seed.startswith("z9hG4bK"):  # an RFC 2543 sender: no usable branch
            cseq = (message.get("cseq") or "").split()[0]
            seed = f"{message.call_id}|{cseq}|{message.get('from')}|{seed}"
        digest = hashlib.sha1(f"{self._secret}|{seed}|{sender.host}".encode()).hexdigest()
        digest = digest[:BRANCH_DIGEST_HEX]
        tcp_id = str(connection.id) if connection is not None else ""
        params: list[tuple[str, str | None]] = [("branch", self._branch(digest, tcp_id))]
        if tcp_id:
            params.append(("tbc", tcp_id))
        return Via(transport, self.advertised_host, self.port, params)

    def _branch(self, digest: str, tcp_id: str) -> str:
        """BRANCH_PREFIX, the digest of the sender's branch, and a MAC of both and of the
        TCP connection id under this dispatcher's secret: a response can prove that its
        top Via was put there by this dispatcher, which a stranger cannot forge."""
        mac = hmac.new(self._secret.encode(), f"{digest}|{tcp_id}".encode(), "sha256")
        return BRANCH_PREFIX + digest + mac.hexdigest()[:BRANCH_MAC_HEX]

    def sent_through_here(self, via: Via) -> bool:
        """``via`` (a response's top Via) is one this dispatcher added to a request."""
        branch = via.param("branch") or ""
        digest = branch[len(BRANCH_PREFIX) : len(BRANCH_PREFIX) + BRANCH_DIGEST_HEX]
        if len(branch) != len(BRANCH_PREFIX) + BRANCH_DIGEST_HEX + BRANCH_MAC_HEX:
            return False
        return hmac.compare_digest(branch, self._branch(digest, via.param("tbc") or ""))

    def _pop_own_route(self, message: SipMessage) -> None:
        route = message.get("route")
        if route is None:
            return
        try:
            uri = parse_uri(uri_of(route))
        except SipParseError:
            return
        own_hosts = {self.advertised_host, self.host, loopback_for(self.host)}
        if uri.host in own_hosts and (uri.port or 5060) == self.port:
            message.remove_first("route")

    def _rewrite_contact(self, message: SipMessage) -> None:
        contact = message.get("contact")
        if contact is not None and contact != "*":
            message.replace_first(
                "contact", replace_uri_hostport(contact, self.advertised_host, self.port)
            )

    @staticmethod
    def _decrement_max_forwards(message: SipMessage) -> bool:
        value = message.get("max-forwards")
        if value is None:
            return True
        try:
            hops = int(value)
        except ValueError:
            return True
        if hops <= 0:
            return False
        message.replace_first("max-forwards", str(hops - 1))
        return True

    def _respond(
        self,
        request: SipMessage,
        status: int,
        reason: str,
        connection: _TcpConnection | None,
        *,
        allow: bool = False,
        tagged: bool = True,
    ) -> None:
        if request.method == "ACK":
            return
        response = response_to(request, status, reason, self._tag(request) if tagged else None)
        if allow:
            response.headers.append(("Allow", ", ".join(ALLOWED_METHODS)))
        data = response.to_bytes()
        if connection is not None:
            connection.send(data)
        else:
            self._send_udp(data, parse_via(request.get("via") or "").reply_address())

    def _tag(self, request: SipMessage) -> str:
        """The To tag of responses made here: the same for every response of a call."""
        return hashlib.sha1(f"{self._secret}|{request.call_id}".encode()).hexdigest()[:10]

    def _owe_answer(self, invite: SipMessage, connection: _TcpConnection | None) -> None:
        """100 Trying for the node at once, however busy its worker: the proxy in front
        then waits for the worker's answer instead of taking a slow node for a dead one
        and trying the next. Having said it, the node owes the caller a final answer,
        should the worker give none (telephony/sip_owed.py)."""
        self._respond(invite, 100, "Trying", connection, tagged=False)
        top = parse_via(invite.get("via") or "")
        tag = self._tag(invite)
        failure = response_to(invite, 503, "Service Unavailable", tag)
        reliable = connection is not None or top.transport == "TCP"
        # Over TCP a new connection goes to the sent-by port (rport is for UDP only).
        host = top.param("received") or top.host
        answer = OwedAnswer(
            failure.to_bytes(),
            (host, top.port or 5060) if reliable else top.reply_address(),
            connection.id if connection else None,
            reliable=reliable,
            branch=top.param("branch") or "",
            to_tag=tag,
            source=host,
            from_tag=invite.from_tag,
            cseq=invite.cseq_number,
        )
        self._owed.owe(invite.call_id, answer)

    def _fail_owed(self, route: Route) -> None:
        """The worker will not answer the INVITE it was given: the 503 owed, if any. Any
        final answer the worker gives later stays here (the caller has one)."""
        answer = self._owed.fail(route.call_id, time.monotonic())
        if answer is not None:
            route.answered_here = True
            self._send_owed(answer)

    def _repeat_owed(self, now: float) -> None:
        """503s sent and not yet acknowledged whose time to go again has come."""
        for answer in self._owed.due(now):
            self._send_owed(answer)

    def _send_owed(self, answer: OwedAnswer) -> None:
        """A 503 owed to a caller, by UDP or over TCP (its own connection, another to the
        same address, or a new one: RFC 3261 18.2.2)."""
        if not answer.reliable:
            self._send_udp(answer.response, answer.address)
            return
        connection = self._connections.get(answer.connection) if answer.connection else None
        connection = connection or self._connection_to(answer.address)
        if connection is not None:
            connection.send(answer.response)
        else:
            self._spawn(self._send_tcp_new(answer.response, answer.address))

    def _send_udp(self, data: bytes, address: tuple[str, int]) -> None:
        if self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(data, address)

    def _connection_to(self, address: tuple[str, int]) -> _TcpConnection | None:
        for connection in self._connections.values():
            if connection.peer == address:
                return connection
        return None

    async def _connect(self, host: str, port: int) -> _TcpConnection:
        existing = self._connection_to((host, port))
        if existing is not None:
            return existing
        _t, connection = await asyncio.get_running_loop().create_connection(
            lambda: _TcpConnection(self), host, port
        )
        return connection

    async def _send_tcp_new(self, data: bytes, address: tuple[str, int]) -> None:
        try:
            connection = await asyncio.wait_for(self._connect(*address), self.limits.tcp_message_s)
        except (OSError, TimeoutError) as exc:
            log.warning("SIP: could not reach %s:%d over TCP: %s", *address, exc)
            return
        connection.send(data)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("SIP: could not relay a request: %s", exc)

    def _register(self, connection: _TcpConnection) -> int | None:
        """An id for a new connection, or None if it must be closed at once: an inbound one
        from outside ``allowed_peers``, or over the total or per-source cap."""
        limits = self.limits
        host = connection.peer[0] if connection.peer else ""
        if connection.inbound and not self.peer_allowed(host):
            why = "not an allowed peer"
        elif len(self._connections) >= limits.tcp_max_connections:
            why = "too many connections"
        elif self._connections_from.get(host, 0) >= limits.tcp_max_per_source:
            why = "too many connections from this address"
        else:
            key = self._next_connection
            self._next_connection += 1
            self._connections[key] = connection
            self._connections_from[host] = self._connections_from.get(host, 0) + 1
            return key
        self._tcp_log.log(logging.INFO, "SIP: TCP connection from %s refused (%s)", host, why)
        return None

    def _unregister(self, connection: _TcpConnection) -> None:
        if self._connections.pop(connection.id, None) is not None:
            self._count_down(self._connections_from, connection.peer[0] if connection.peer else "")


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, dispatcher: SipDispatcher):
        self.dispatcher = dispatcher

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            self.dispatcher.datagram(data, addr)
        except Exception:
            self.dispatcher.handling_failed(addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP: UDP error %s", exc)


class _TcpConnection(asyncio.Protocol):
    """One SIP-over-TCP connection: messages framed by Content-Length (RFC 3261 18.3).

    Bounded like everything else here (``SipLimits``): a message must be complete within
    ``tcp_message_s`` of its first byte and within MAX_MESSAGE_BYTES, the connection is
    closed after ``tcp_idle_s`` without traffic while no call uses it, and when the peer
    stops reading (more than ``tcp_max_write_buffer`` bytes waiting), rather than keep
    queueing for it.
    """

    def __init__(self, dispatcher: SipDispatcher, inbound: bool = False):
        self.dispatcher = dispatcher
        self.inbound = inbound  # accepted on the public port (else: dialled by us)
        self.id = 0
        self.peer: tuple[str, int] | None = None
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._last_received = time.monotonic()
        self._message_started: float | None = None  # first byte of an incomplete message
        self._scanned = 0  # the buffer holds no end of headers before this
        # The parsed head of the message being received (message, body start, end, refusal).
        self._head: tuple[SipMessage, int, int, SipBadRequest | None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        key = self.dispatcher._register(self)
        if key is None:
            transport.abort()
            return
        self.id = key
        limit = self.dispatcher.limits.tcp_max_write_buffer
        self._transport.set_write_buffer_limits(high=limit, low=limit // 2)

    def connection_lost(self, exc: Exception | None) -> None:
        self._buffer.clear()
        if self.id:
            self.dispatcher._unregister(self)

    def pause_writing(self) -> None:
        """The peer has left ``tcp_max_write_buffer`` bytes unread: it is not reading."""
        self.drop("the peer does not read")

    def send(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        limit = self.dispatcher.limits.tcp_max_write_buffer
        if transport.get_write_buffer_size() + len(data) > limit:
            self.drop("the peer does not read")
            return
        transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def overdue(self, now: float, limits: SipLimits, in_call: bool) -> str | None:
        """Why this connection has outlived its deadline, or None."""
        if self._message_started is not None and now - self._message_started > limits.tcp_message_s:
            return "message not completed in time"
        if not in_call and now - self._last_received > limits.tcp_idle_s:
            return "idle"
        return None

    def drop(self, why: str) -> None:
        """Close at once, discarding what is queued either way."""
        self.dispatcher._tcp_log.log(
            logging.INFO, "SIP: closing TCP connection with %s (%s)", self.peer, why
        )
        self._buffer.clear()
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        self._last_received = time.monotonic()
        self._buffer += data
        while True:
            while self._head is None and self._buffer[:2] == b"\r\n":  # keep-alive pings
                del self._buffer[:2]
                self._scanned = 0
            if not self._buffer:
                self._message_started = None
                return
            if self._message_started is None:
                self._message_started = self._last_received
            if self._head is None and not self._read_head():
                return
            message, body_at, total, bad = self._head
            if len(self._buffer) < total:
                return  # the head is kept parsed while the body arrives
            message.body = bytes(self._buffer[body_at:total])
            del self._buffer[:total]
            self._head = None
            self._message_started = None
            try:
                if bad is not None:
                    self.dispatcher.refuse_malformed(bad, self.peer, self)
                else:
                    self.dispatcher.handle(message, self.peer, self)
            except Exception:
                self.dispatcher.handling_failed(self.peer)

    def _read_head(self) -> bool:
        """Parse the head at the start of the buffer once it is complete: True and
        ``self._head`` set, or False (incomplete, or the connection dropped). The search
        resumes where the last one stopped, so a head sent a byte at a time costs linear
        time; a head over MAX_HEAD_BYTES, or a message whose length cannot be known, ends
        the connection (after a 400 if the request was readable)."""
        end, sep = find_head_end(self._buffer, self._scanned)
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES + 4:
                self._drop("no end of headers")
            else:
                self._scanned = max(0, len(self._buffer) - 3)
            return False
        self._scanned = 0
        bad = None
        try:
            message = parse_head(bytes(self._buffer[:end]))
        except SipBadRequest as exc:
            message, bad = exc.message, exc
        except SipParseError as exc:
            self._drop(str(exc))
            return False
        try:
            length = content_length(message)
        except SipParseError as exc:
            if bad is not None:
                self.dispatcher.refuse_malformed(bad, self.peer, self)
            self._drop(str(exc))
            return False
        self._head = (message, end + sep, end + sep + length, bad)
        return True

    def _drop(self, why: str) -> None:
        log.debug("SIP: closing TCP connection from %s (%s)", self.peer, why)
        self._buffer.clear()
        self._head = None
        self._scanned = 0
        self.close()
