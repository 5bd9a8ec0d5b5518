"""State a stranger or a misbehaving PBX could make the SIP endpoint keep: call slots,
routes, transfers, TCP connections. Real dispatcher, real pjsua workers, real sockets on
loopback; the deadlines (Timer B, Timer H, TCP timeouts) are shortened so that each test
waits seconds, not the RFC's 32 s.

Each call here is answered by an echo handler: these tests are about the SIP plumbing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import pytest
from sipp.rtp_peer import RtpPeer
from sipp.sip_client import SipClient

from telephony.config import SipSettings, TelephonySettings, TransferSettings
from telephony.sip_call import MAX_INBOUND_FRAMES, SipCallTransport
from telephony.sip_dispatcher import SipDispatcher
from telephony.sip_endpoint import (
    SipEndpoint,
    SipEndpointError,
    media_bind_host,
    rtp_port_block,
)
from telephony.sip_limits import SipLimits
from telephony.sip_routes import CallRoutes, CallState, InviteKind, Route
from telephony.sip_worker_link import WorkerError, WorkerLeg, WorkerLink
from voicebot.frames import AudioFrame
from voicebot.g711 import ulaw_encode

SHORT = {"timer_b_s": 1.0, "timer_h_s": 1.0, "linger_s": 2.0}


@contextlib.asynccontextmanager
async def echo_endpoint(max_calls: int, **limits: float):
    """A SIP endpoint (dispatcher and pjsua workers) whose calls echo the caller."""

    async def echo(transport, caller, call_id):
        while (frame := await transport.receive()) is not None:
            if isinstance(frame, AudioFrame):
                await transport.send(frame)

    settings = TelephonySettings(sip=SipSettings(port=0, max_calls=max_calls))
    endpoint = SipEndpoint(settings, echo, limits=SipLimits(**limits))
    await endpoint.start()
    try:
        yield endpoint
    finally:
        await endpoint.stop()


async def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


def free_slots(endpoint: SipEndpoint) -> int:
    dispatcher = endpoint.dispatcher
    return dispatcher.capacity - sum(len(w.calls) for w in dispatcher._workers.values())


def final(call_id: str, method: str = "INVITE"):
    return lambda m: (
        not m.is_request and m.call_id == call_id and m.method == method and (m.status >= 200)
    )


async def answered_call(client: SipClient, port: int, call_id: str) -> object:
    """INVITE, 200, ACK: an established call; returns the 200."""
    client.invite(port, call_id)
    ok = await client.expect(final(call_id), timeout=30)
    assert ok.status == 200, ok.start_line
    client.in_dialog("ACK", port, ok, 1)
    return ok


# -- call slots ---------------------------------------------------------------------------------
def test_invite_the_worker_drops_frees_its_slot_after_timer_b():
    """INVITEs that pjsua drops without a response (a header it cannot parse, here
    ``Expires: x`` and ``Session-Expires: x``; the dispatcher relays them as they are). Their
    call slots are freed once Timer B has run out, and the next caller is answered; before,
    they held the slots for ever and every later caller got 503. Their callers, told 100
    Trying by the dispatcher, get 503 when it gives up on them."""

    async def scenario():
        async with echo_endpoint(max_calls=2, **SHORT) as endpoint:
            client = await SipClient.open()
            try:
                dropped = [uuid.uuid4().hex, uuid.uuid4().hex]
                client.invite(endpoint.port, dropped[0], extra="Expires: x")
                client.invite(endpoint.port, dropped[1], extra="Session-Expires: x")
                taken = await wait_until(lambda: free_slots(endpoint) == 0, 5)
                freed = await wait_until(lambda: free_slots(endpoint) == 2, 6)
                answered = uuid.uuid4().hex
                client.invite(endpoint.port, answered)
                response = await client.expect(final(answered), timeout=30)
                await wait_until(
                    lambda: all(len(client.responses(d, "INVITE")) >= 2 for d in dropped), 5
                )
                silent = [[m.status for m in client.responses(d, "INVITE")] for d in dropped]
                return taken, freed, silent, response.status
            finally:
                client.close()

    taken, freed, silent, status = asyncio.run(scenario())
    assert taken
    # 100, then 503 (repeated until an ACK, which this caller never sends), all from the
    # dispatcher: pjsua gave no final answer.
    assert all(s[0] == 100 and set(s[1:]) == {503} for s in silent), silent
    assert freed
    assert status == 200


def test_answer_never_acknowledged_frees_its_slot_and_ends_the_call():
    """A caller takes the 200 and never ACKs: after Timer H the slot is free and the
    worker's side of the call has ended too (the bot's transport is gone)."""

    async def scenario():
        async with echo_endpoint(max_calls=1, **SHORT) as endpoint:
            client = await SipClient.open()
            try:
                call_id = uuid.uuid4().hex
                client.invite(endpoint.port, call_id)
                ok = await client.expect(final(call_id), timeout=30)
                assert await wait_until(lambda: len(endpoint.transports) == 1, 10)
                freed = await wait_until(lambda: free_slots(endpoint) == 1, 5)
                ended = await wait_until(lambda: not endpoint.transports, 15)
                return ok.status, freed, ended
            finally:
                client.close()

    status, freed, ended = asyncio.run(scenario())
    assert status == 200
    assert freed
    assert ended


def test_call_whose_caller_stops_sending_rtp_is_hung_up():
    """A caller that vanishes without a BYE does not keep its call: while its RTP flows the
    call stays up past the media timeout (2 s here); once its RTP stops, the worker hangs
    up within the timeout and the slot is free again."""

    async def scenario():
        async with echo_endpoint(max_calls=1, media_timeout_s=2.0, **SHORT) as endpoint:
            client = await SipClient.open()
            peer = await RtpPeer.open()
            try:
                call_id = uuid.uuid4().hex
                client.invite(endpoint.port, call_id, rtp_port=peer.port)
                ok = await client.expect(final(call_id), timeout=30)
                client.in_dialog("ACK", endpoint.port, ok, 1)
                await peer.wait_for_bot(10)
                await asyncio.sleep(5.0)  # RTP flowing: longer than the media timeout
                bye_while_talking = [m for m in client.received if m.method == "BYE"]
                peer.close()  # the caller's RTP stops
                stopped = time.monotonic()
                bye = await client.expect(
                    lambda m: m.is_request and m.method == "BYE" and m.call_id == call_id, 15
                )
                waited = time.monotonic() - stopped
                client.reply(bye, 200, "OK", endpoint.port)
                freed = await wait_until(lambda: free_slots(endpoint) == 1, 10)
                return bye_while_talking, waited, freed
            finally:
                peer.close()
                client.close()

    bye_while_talking, waited, freed = asyncio.run(scenario())
    assert bye_while_talking == []
    assert 1.5 <= waited <= 6.0, waited
    assert freed


def padded_invite(client: SipClient, port: int, call_id: str, padding: int) -> None:
    """An INVITE with ``padding`` bytes of extra headers before its Call-ID and CSeq: were
    it cut short at a receive limit, the headers that make it a request would be lost."""
    pads = "\n".join(f"X-Pad-{i}: " + "p" * 990 for i in range(padding // 1000))
    pads += "\nX-Pad-end: " + "p" * (padding % 1000 or 1)
    sender = f"{client.host}:{client.port}"
    sdp = (
        f"v=0\no=caller 1 1 IN IP4 {client.host}\ns=-\nc=IN IP4 {client.host}\nt=0 0\n"
        "m=audio 9 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
    )
    client.send(
        f"""INVITE sip:taxbot@127.0.0.1:{port} SIP/2.0
        Via: SIP/2.0/UDP {sender};branch=z9hG4bK-{call_id};rport
        {pads}
        From: <sip:0312345678@{sender}>;tag=big
        To: <sip:taxbot@127.0.0.1:{port}>
        Contact: <sip:0312345678@{sender}>
        Content-Type: application/sdp
        Call-ID: {call_id}
        CSeq: 1 INVITE

        {sdp}""",
        port,
    )


def test_invite_larger_than_a_worker_reads_gets_513_and_takes_no_slot():
    """pjsua reads at most 4,000 bytes of a datagram and drops what it cannot parse: an
    INVITE that would be longer once relayed is answered 513 by the dispatcher, without
    taking the only call slot, so the next caller is answered; a large INVITE that fits
    is still answered by the worker."""

    async def scenario():
        async with echo_endpoint(max_calls=1, **SHORT) as endpoint:
            client = await SipClient.open()
            try:
                big, fits = uuid.uuid4().hex, uuid.uuid4().hex
                padded_invite(client, endpoint.port, big, 4_500)
                refused = await client.expect(final(big), timeout=10)
                slots = free_slots(endpoint)
                padded_invite(client, endpoint.port, fits, 2_800)
                answered = await client.expect(final(fits), timeout=30)
                return refused.status, refused.start_line, slots, answered.status
            finally:
                client.close()

    status, line, slots, answered = asyncio.run(scenario())
    assert (status, line) == (513, "SIP/2.0 513 Message Too Large")
    assert slots == 1
    assert answered == 200


class RtpInjector(asyncio.DatagramProtocol):
    """A stranger on another port who found a worker's media port: sends loud RTP (a
    1 kHz tone, its own SSRC) in bursts, and counts the RTP that comes back to it."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0
        self._seq = 0
        tone = (8000 * np.sin(2 * np.pi * 1000 * np.arange(160) / 8000)).astype(np.int16)
        self._payload = ulaw_encode(tone)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.received += 1

    def burst(self, target: tuple[str, int], packets: int) -> None:
        for _ in range(packets):
            self._seq += 1
            header = struct.pack("!BBHII", 0x80, 0, self._seq & 0xFFFF, self._seq * 160, 0xBAD)
            self.transport.sendto(header + self._payload, target)

    async def keep_sending(self, target: tuple[str, int], packets: int, every_s: float) -> None:
        while True:
            self.burst(target, packets)
            await asyncio.sleep(every_s)


def media_address(answer) -> tuple[str, int]:
    """Where the bot's SDP answer says its RTP is received."""
    body = answer.body.decode()
    host = body.split("c=IN IP4 ", 1)[1].split()[0]
    return host, int(body.split("m=audio ", 1)[1].split()[0])


def test_rtp_from_another_source_is_not_heard_and_moves_nothing():
    """A live call whose caller sends RTP from the address in its SDP. A stranger sends
    loud RTP to the worker's media port from another port, in bursts long enough to make
    pjmedia switch its peer (ten in a row). The bot hears none of it, keeps sending its
    own RTP to the caller (the stranger gets none), and once the caller's RTP stops, the
    stranger's does not keep the call alive: it is hung up after the media timeout."""

    async def scenario():
        loudest: list[int] = []  # the loudest sample of each frame the bot heard

        async def listen(transport, caller, call_id):
            while (frame := await transport.receive()) is not None:
                if isinstance(frame, AudioFrame):
                    loudest.append(int(np.abs(frame.samples).max(initial=0)))
                    await transport.send(frame)

        sip = SipSettings(port=0, max_calls=1, rtp_port_min=31000, rtp_port_max=31099)
        settings = TelephonySettings(sip=sip)
        limits = SipLimits(media_timeout_s=2.0, **SHORT)
        endpoint = SipEndpoint(settings, listen, limits=limits)
        await endpoint.start()
        client = await SipClient.open()
        peer = await RtpPeer.open()
        _t, stranger = await asyncio.get_running_loop().create_datagram_endpoint(
            RtpInjector, local_addr=("127.0.0.1", 0)
        )
        attack = None
        try:
            call_id = uuid.uuid4().hex
            client.invite(endpoint.port, call_id, rtp_port=peer.port)
            ok = await client.expect(final(call_id), timeout=30)
            client.in_dialog("ACK", endpoint.port, ok, 1)
            await peer.wait_for_bot(10)
            media = media_address(ok)
            before = len(peer.received)
            attack = asyncio.create_task(stranger.keep_sending(media, 30, 0.1))
            await asyncio.sleep(3.0)
            to_caller = len(peer.received) - before
            heard = list(loudest)
            peer.close()  # the caller's RTP stops; the stranger's goes on
            stopped = time.monotonic()
            bye = await client.expect(
                lambda m: m.is_request and m.method == "BYE" and m.call_id == call_id, 15
            )
            waited = time.monotonic() - stopped
            client.reply(bye, 200, "OK", endpoint.port)
            return media, heard, to_caller, stranger.received, waited
        finally:
            if attack is not None:
                attack.cancel()
            stranger.transport.close()
            peer.close()
            client.close()
            await endpoint.stop()

    media, heard, to_caller, to_stranger, waited = asyncio.run(scenario())
    assert media[0] == "127.0.0.1" and 31000 <= media[1] <= 31099  # [sip] rtp_port_min/max
    assert heard and max(heard) < 100, max(heard)  # the caller's silence only
    assert to_caller >= 100  # 3 s of the bot's 20 ms frames, give or take scheduling
    assert to_stranger == 0
    assert waited <= 6.0, waited


def test_rtp_port_range_is_shared_out_and_media_binds_to_one_address(monkeypatch):
    """Each worker has its own block of ``[sip] rtp_port_min..rtp_port_max`` (set in the
    file or by VOICEBOT_SIP__RTP_PORT_*); a range too small for the workers is refused at
    start; with the SIP host a wildcard, media binds to the advertised address when it is
    this machine's, not to every interface."""
    monkeypatch.setenv("VOICEBOT_SIP__RTP_PORT_MIN", "20000")
    monkeypatch.setenv("VOICEBOT_SIP__RTP_PORT_MAX", "20999")
    sip = TelephonySettings().sip
    assert (sip.rtp_port_min, sip.rtp_port_max) == (20000, 20999)
    with pytest.raises(ValueError, match="rtp_port_max"):
        SipSettings(rtp_port_min=20000, rtp_port_max=20000)
    blocks = [rtp_port_block(i, 4, 20000, 20999) for i in range(4)]
    assert blocks == [(20000, 250), (20250, 250), (20500, 250), (20750, 250)]
    with pytest.raises(SipEndpointError, match="ports each"):
        rtp_port_block(0, 128, 20000, 20999)
    assert media_bind_host("0.0.0.0", "127.0.0.1") == "127.0.0.1"
    assert media_bind_host("0.0.0.0", "192.0.2.77") == "0.0.0.0"  # not this host's: NAT
    assert media_bind_host("127.0.0.1", "192.0.2.77") == "127.0.0.1"


def test_same_call_id_twice_is_refused_and_retransmissions_take_no_slot():
    """Two initial INVITEs with one Call-ID but different From tags: the second gets 482
    Loop Detected and takes no slot; a retransmission of the first (same branch) reaches
    the same worker, which answers it again, without taking a slot either. A BYE with the
    Call-ID but a stranger's From tag gets 481 and the call stays up."""

    async def scenario():
        async with echo_endpoint(max_calls=2, **SHORT) as endpoint:
            first, second = await SipClient.open(), await SipClient.open()
            try:
                call_id = uuid.uuid4().hex
                branch = first.invite(endpoint.port, call_id, from_tag="first")
                ok = await first.expect(final(call_id), timeout=30)
                first.invite(endpoint.port, call_id, from_tag="first", branch=branch)
                await first.expect(lambda m: len(first.responses(call_id, "INVITE")) >= 2, 10)
                slots_after_retransmission = free_slots(endpoint)
                second.invite(endpoint.port, call_id, from_tag="second")
                refused = await second.expect(final(call_id), timeout=10)
                slots_after_second = free_slots(endpoint)
                first.in_dialog("ACK", endpoint.port, ok, 1)
                forged = ok.get("from").replace("tag=first", "tag=second")
                second.send(
                    f"""BYE sip:taxbot@127.0.0.1:{endpoint.port} SIP/2.0
                    Via: SIP/2.0/UDP 127.0.0.1:{second.port};branch=z9hG4bK-forged;rport
                    From: {forged}
                    To: {ok.get("to")}
                    Call-ID: {call_id}
                    CSeq: 5 BYE
                    """,
                    endpoint.port,
                )
                bye_refused = await second.expect(final(call_id, "BYE"), timeout=10)
                await asyncio.sleep(0.5)
                return (
                    ok.status,
                    slots_after_retransmission,
                    refused.status,
                    slots_after_second,
                    bye_refused.status,
                    len(endpoint.transports),
                    endpoint.calls_answered,
                )
            finally:
                first.close()
                second.close()

    ok, after_retransmission, refused, after_second, bye, up, answered = asyncio.run(scenario())
    assert ok == 200
    assert after_retransmission == 1
    assert refused == 482
    assert after_second == 1
    assert bye == 481
    assert up == 1 and answered == 1


# -- transfers by the far end -------------------------------------------------------------------
def test_transfer_requests_from_the_far_end_are_refused():
    """In an established call, the far end's REFER (in and out of the dialog), an INVITE
    with Replaces for the call, a NOTIFY for no subscription and a SUBSCRIBE are refused
    at the dispatcher; the call is still up afterwards."""

    async def scenario():
        async with echo_endpoint(max_calls=2, **SHORT) as endpoint:
            client = await SipClient.open()
            port = endpoint.port
            try:
                call_id = uuid.uuid4().hex
                ok = await answered_call(client, port, call_id)
                refer_to = "Refer-To: <sip:attacker@127.0.0.1:9>"
                client.in_dialog("REFER", port, ok, 2, extra=refer_to)
                in_dialog = await client.expect(final(call_id, "REFER"))
                stray = uuid.uuid4().hex
                client.send(
                    f"""REFER sip:taxbot@127.0.0.1:{port} SIP/2.0
                    Via: SIP/2.0/UDP 127.0.0.1:{client.port};branch=z9hG4bK-stray;rport
                    From: <sip:pbx@127.0.0.1>;tag=x
                    To: <sip:taxbot@127.0.0.1>
                    Call-ID: {stray}
                    CSeq: 1 REFER
                    {refer_to}
                    """,
                    port,
                )
                out_of_dialog = await client.expect(final(stray, "REFER"))
                to_tag = ok.get("to").split("tag=")[1]
                from_tag = ok.get("from").split("tag=")[1]
                hijack = uuid.uuid4().hex
                client.invite(
                    port, hijack, from_tag="hijacker",
                    extra=f"Replaces: {call_id};to-tag={from_tag};from-tag={to_tag}",
                )  # fmt: skip
                replaces = await client.expect(final(hijack))
                client.in_dialog("NOTIFY", port, ok, 3, extra="Event: refer")
                notify = await client.expect(final(call_id, "NOTIFY"))
                client.in_dialog("SUBSCRIBE", port, ok, 4, extra="Event: dialog")
                subscribe = await client.expect(final(call_id, "SUBSCRIBE"))
                await asyncio.sleep(0.5)
                return (
                    in_dialog.status,
                    out_of_dialog.status,
                    replaces.status,
                    notify.status,
                    subscribe.status,
                    len(endpoint.transports),
                )
            finally:
                client.close()

    in_dialog, out_of_dialog, replaces, notify, subscribe, up = asyncio.run(scenario())
    assert in_dialog == 405
    assert out_of_dialog == 405
    assert replaces == 403
    assert notify == 481
    assert subscribe == 405
    assert up == 1


def test_worker_refuses_a_refer_that_reaches_it():
    """A REFER sent straight to the worker's private port, in an established dialog (as if
    it had got past the dispatcher), is refused by pjsua in the worker (403), which dials
    nothing; the call stays up."""

    async def scenario():
        async with echo_endpoint(max_calls=1, **SHORT) as endpoint:
            client = await SipClient.open()
            try:
                call_id = uuid.uuid4().hex
                ok = await answered_call(client, endpoint.port, call_id)
                await asyncio.sleep(0.3)
                host, worker_port = endpoint.workers[0].address
                client.send(
                    f"""REFER sip:taxbot@{host}:{worker_port} SIP/2.0
                    Via: SIP/2.0/UDP 127.0.0.1:{client.port};branch=z9hG4bK-direct;rport
                    From: {ok.get("from")}
                    To: {ok.get("to")}
                    Call-ID: {call_id}
                    CSeq: 2 REFER
                    Contact: <sip:0312345678@127.0.0.1:{client.port}>
                    Refer-To: <sip:attacker@127.0.0.1:9>
                    """,
                    worker_port,
                    host,
                )
                refused = await client.expect(final(call_id, "REFER"))
                await asyncio.sleep(1.0)
                return refused.status, len(endpoint.transports), endpoint.workers[0].alive
            finally:
                client.close()

    status, up, alive = asyncio.run(scenario())
    assert status == 403
    assert up == 1 and alive


# -- TCP ----------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def bare_dispatcher(allowed: list[str], **limits):
    """The dispatcher alone (no workers: it answers OPTIONS 503 itself)."""
    dispatcher = SipDispatcher(
        "127.0.0.1", 0, allowed_peers=allowed, max_calls=4, limits=SipLimits(**limits)
    )
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True if the far end closes ``sock`` (EOF or reset) within ``timeout``, reading and
    discarding whatever it sent before."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def connect(port: int, source: str = "127.0.0.1", rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def test_tcp_connect_from_a_stranger_is_closed_at_once_and_connections_are_capped():
    """A TCP connect from outside ``allowed_peers`` is closed at once; from an allowed
    address, connections past the per-source cap are closed at once, and past the total
    cap from any source."""

    async def scenario():
        async with bare_dispatcher(
            ["127.0.0.1", "127.0.0.3"], tcp_max_per_source=2, tcp_max_connections=3
        ) as d:

            def probe():
                stranger = connect(d.port, "127.0.0.2")
                refused_stranger = closed_by_peer(stranger, 2)
                kept = [connect(d.port), connect(d.port)]
                over_source = connect(d.port)
                refused_source = closed_by_peer(over_source, 2)
                other = connect(d.port, "127.0.0.3")
                kept_other = not closed_by_peer(other, 0.5)
                over_total = connect(d.port, "127.0.0.3")
                refused_total = closed_by_peer(over_total, 2)
                kept_first = not closed_by_peer(kept[0], 0.3)
                for s in [stranger, *kept, over_source, other, over_total]:
                    s.close()
                return refused_stranger, refused_source, kept_other, refused_total, kept_first

            return await asyncio.to_thread(probe)

    stranger, over_source, kept_other, over_total, kept_first = asyncio.run(scenario())
    assert stranger
    assert over_source
    assert kept_other and kept_first
    assert over_total


def test_strangers_and_host_name_peers_cost_no_log_line_each(caplog):
    """With a host name among ``allowed_peers`` (matched only as a name, never as a source),
    thirty TCP connects from a stranger and thirty requests from the PBX cost at most a
    few log lines in all: the stranger's refusals go through the throttled logger and the
    allowed_peers list is read once, not on every connect and every request."""

    async def scenario():
        async with bare_dispatcher(["127.0.0.1", "pbx.example.jp"]) as d:
            pbx = await SipClient.open()

            def connects():
                for _ in range(30):
                    closed_by_peer(connect(d.port, "127.0.0.2"), 2)

            await asyncio.to_thread(connects)
            for _ in range(30):
                call_id = uuid.uuid4().hex
                pbx.send(
                    f"""OPTIONS sip:taxbot@127.0.0.1:{d.port} SIP/2.0
                    Via: SIP/2.0/UDP 127.0.0.1:{pbx.port};branch=z9hG4bK-{call_id};rport
                    From: <sip:pbx@127.0.0.1>;tag=o
                    To: <sip:taxbot@127.0.0.1>
                    Call-ID: {call_id}
                    CSeq: 1 OPTIONS
                    """,
                    d.port,
                )
                await pbx.expect(final(call_id, "OPTIONS"))
            pbx.close()
            return d.connections_open

    with caplog.at_level(logging.DEBUG, logger="telephony"):
        left_open = asyncio.run(scenario())
    lines = [r for r in caplog.records if r.name == "telephony.sip_dispatcher"]
    assert left_open == 0
    assert len(lines) <= 3, [r.getMessage() for r in lines]


def test_calls_from_one_source_are_capped_when_configured():
    """``max_calls_per_source`` = 1: a second INVITE from the same address while its first
    call holds a slot gets 503, another allowed address still gets through, and once the
    first call has ended its address may call again."""

    async def scenario():
        async with bare_dispatcher(["127.0.0.1", "127.0.0.3"], max_calls_per_source=1) as d:
            worker = await SipClient.open()
            d.add_worker("w", (worker.host, worker.port), 4)
            one, other = await SipClient.open(), await SipClient.open("127.0.0.3")
            try:
                first, second, third, fourth = (uuid.uuid4().hex for _ in range(4))

                def relayed(call_id):
                    return worker.expect(lambda m: m.is_request and m.call_id == call_id)

                one.invite(d.port, first)
                await relayed(first)
                one.invite(d.port, second)
                refused = await one.expect(final(second))
                other.invite(d.port, third)
                await relayed(third)
                d.call_ended(first)
                one.invite(d.port, fourth)
                await relayed(fourth)
                return refused.status, d.calls_in_progress
            finally:
                for client in (worker, one, other):
                    client.close()

    refused, in_progress = asyncio.run(scenario())
    assert refused == 503
    assert in_progress == 2


def test_tcp_idle_and_half_sent_message_are_closed():
    """A connection that sends nothing is closed after the idle timeout; one that trickles
    a message (a byte at a time, never finishing it) after the message deadline."""

    async def scenario():
        async with bare_dispatcher(["127.0.0.1"], tcp_idle_s=1.0, tcp_message_s=1.0) as d:

            def probe():
                idle = connect(d.port)
                idle_closed = closed_by_peer(idle, 4)
                slow = connect(d.port)
                slow.settimeout(0.2)
                deadline = time.monotonic() + 6
                slow_closed = False
                for byte in b"OPTIONS sip:taxbot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP " * 20:
                    try:
                        slow.send(bytes([byte]))
                        if slow.recv(100) == b"":
                            slow_closed = True
                            break
                    except TimeoutError:
                        pass
                    except (ConnectionResetError, BrokenPipeError):
                        slow_closed = True
                        break
                    if time.monotonic() > deadline:
                        break
                idle.close()
                slow.close()
                return idle_closed, slow_closed

            return await asyncio.to_thread(probe)

    idle_closed, slow_closed = asyncio.run(scenario())
    assert idle_closed
    assert slow_closed


def options(port: int, index: int, padding: int) -> bytes:
    return (
        f"OPTIONS sip:taxbot@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-{index}\r\n"
        f"From: <sip:reader@127.0.0.1>;tag={'x' * padding}\r\n"
        f"To: <sip:taxbot@127.0.0.1>\r\nCall-ID: never-reads-{index}\r\n"
        f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_tcp_client_that_never_reads_is_closed_and_its_buffer_bounded():
    """A client sends requests whose responses it never reads (a small receive window):
    the dispatcher does not queue them without limit; it closes the connection once more
    than ``tcp_max_write_buffer`` bytes wait."""

    async def scenario():
        async with bare_dispatcher(["127.0.0.1"], tcp_max_write_buffer=64 * 1024) as d:
            peak = 0

            def flood():
                sock = connect(d.port, rcvbuf=4096)
                sock.settimeout(2)
                try:
                    for i in range(15000):
                        sock.sendall(options(d.port, i, 400))
                except (ConnectionResetError, BrokenPipeError, TimeoutError):
                    pass
                closed = closed_by_peer(sock, 5)
                sock.close()
                return closed

            task = asyncio.create_task(asyncio.to_thread(flood))
            while not task.done():
                for connection in list(d._connections.values()):
                    if connection._transport is not None:
                        peak = max(peak, connection._transport.get_write_buffer_size())
                await asyncio.sleep(0.01)
            return await task, peak, len(d._connections)

    closed, peak, still_open = asyncio.run(scenario())
    assert closed
    assert peak <= 64 * 1024 + 8192
    assert still_open == 0


# -- bounded waits and tables -------------------------------------------------------------------
def test_command_to_a_stuck_worker_fails_instead_of_waiting_for_ever(monkeypatch):
    """The worker process carrying a call is frozen (SIGSTOP): the bot's hangup fails with
    WorkerError after the command timeout instead of waiting for ever."""
    monkeypatch.setattr("telephony.sip_worker_link.COMMAND_TIMEOUT_S", 1.0)

    async def scenario():
        async with echo_endpoint(max_calls=1, **SHORT) as endpoint:
            client = await SipClient.open()
            worker = endpoint.workers[0]
            try:
                await answered_call(client, endpoint.port, uuid.uuid4().hex)
                assert await wait_until(lambda: len(endpoint.transports) == 1, 10)
                transport = next(iter(endpoint.transports.values()))
                os.kill(worker.pid, signal.SIGSTOP)
                try:
                    started = time.monotonic()
                    try:
                        await asyncio.wait_for(transport.leg.hangup(), 10)
                        outcome = "done"
                    except WorkerError:
                        outcome = "WorkerError"
                    except TimeoutError:
                        outcome = "still waiting"
                    return outcome, time.monotonic() - started
                finally:
                    os.kill(worker.pid, signal.SIGCONT)
            finally:
                client.close()

    outcome, waited = asyncio.run(scenario())
    assert outcome == "WorkerError"
    assert waited < 5


def test_route_table_is_capped_and_keeps_calls_holding_slots():
    """At most ``max_routes`` routes: a new one evicts the oldest ended route, never a call
    holding a slot, and is refused when every route holds one. A caller's retry with a
    higher CSeq after its call ended is a new call; the same INVITE again is a
    retransmission; another From tag is a conflict."""
    routes = CallRoutes(SipLimits(max_routes=3, linger_s=10.0))

    def route(call_id: str, state: CallState, cseq: int = 1) -> Route:
        return Route(call_id, "tag", "z9hG4bK-b", cseq, "w", None, state, 0.0, 0.0)

    held = [route("held-1", CallState.CONFIRMED), route("held-2", CallState.CALLING)]
    ended = route("ended", CallState.CALLING)
    for r in [*held, ended]:
        assert routes.add(r)
    routes.end(ended, now=1.0)
    assert routes.classify("ended", "tag", "z9hG4bK-b", 1)[0] is InviteKind.RETRANSMISSION
    assert routes.classify("ended", "tag", "z9hG4bK-c", 2)[0] is InviteKind.RETRY
    assert routes.classify("ended", "other", "z9hG4bK-c", 2)[0] is InviteKind.CONFLICT
    assert routes.classify("held-1", "tag", "z9hG4bK-c", 1)[0] is InviteKind.CONFLICT
    assert routes.add(route("new", CallState.CALLING))  # evicts the ended route
    assert routes.get("ended") is None and len(routes) == 3
    assert not routes.add(route("one-too-many", CallState.CALLING))
    assert {r.call_id for r in routes.routes()} == {"held-1", "held-2", "new"}


def test_caller_audio_nobody_reads_is_bounded():
    """A call whose handler stopped reading (stuck, or the audio handed elsewhere) keeps at
    most MAX_INBOUND_FRAMES of the caller's audio, not the whole call's. The worker link is
    real but not started: the frames are handed to the call as the link would."""
    link = WorkerLink(0, {}, lambda leg, uri: None, lambda leg: None, lambda link: None)
    transport = SipCallTransport(WorkerLeg(link, 1, "call"), "c1", None, TransferSettings())
    frames = [bytes([i % 256]) * 320 for i in range(MAX_INBOUND_FRAMES + 2000)]
    for pcm in frames:
        transport.pcm_received(pcm)

    async def first() -> bytes:
        return (await transport.receive()).pcm

    assert transport._inbound.qsize() == MAX_INBOUND_FRAMES
    assert transport.frames_dropped == 2000
    assert asyncio.run(first()) == frames[0]


def test_sip_limits_are_set_by_file_or_environment(monkeypatch):
    """An operator sets the deadlines in ``[sip.limits]`` or ``VOICEBOT_SIP__LIMITS__*``."""
    from telephony.config import TelephonySettings
    from telephony.sip_endpoint import SipEndpoint

    monkeypatch.setenv("VOICEBOT_SIP__LIMITS__TIMER_B_S", "8")
    monkeypatch.setenv("VOICEBOT_SIP__LIMITS__MEDIA_TIMEOUT_S", "45")
    endpoint = SipEndpoint(TelephonySettings(), on_call=lambda call: None)
    assert (endpoint.limits.timer_b_s, endpoint.limits.media_timeout_s) == (8.0, 45.0)
    assert endpoint.limits.timer_h_s == 32.0  # the RFC default where nothing is set
