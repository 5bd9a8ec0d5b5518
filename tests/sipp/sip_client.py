"""A hand-driven SIP user agent over UDP, for tests that send what sipp will not.

Hostile-input tests need exact control of each message: an INVITE without a From tag, two
INVITEs with one Call-ID, a REFER in someone's dialog, an INVITE that is never ACKed. This
client builds such messages as text, sends them from its own loopback socket and parses
what comes back with the dispatcher's own parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Callable

from telephony.sip_message import SipMessage, SipParseError, parse_datagram

_branches = itertools.count(1)


def new_branch() -> str:
    return f"z9hG4bK-test-{uuid.uuid4().hex[:8]}-{next(_branches)}"


class SipClient(asyncio.DatagramProtocol):
    """One caller's SIP socket on 127.0.0.1; every message received is kept in order."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[SipMessage] = []
        self._arrived = asyncio.Event()

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> SipClient:
        _t, client = await asyncio.get_running_loop().create_datagram_endpoint(
            cls, local_addr=(host, 0)
        )
        return client

    @property
    def host(self) -> str:
        return self.transport.get_extra_info("sockname")[0]

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self.received.append(parse_datagram(data))
        except SipParseError:
            return
        self._arrived.set()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, text: str, port: int, host: str = "127.0.0.1") -> None:
        head, _, body = text.partition("\n\n")
        head = "\r\n".join(line.strip() for line in head.splitlines() if line.strip())
        body = "".join(line.strip() + "\r\n" for line in body.splitlines() if line.strip())
        if "Content-Length" not in head:
            head += f"\r\nContent-Length: {len(body.encode())}"
        self.transport.sendto((head + "\r\n\r\n" + body).encode(), (host, port))

    async def expect(
        self, match: Callable[[SipMessage], bool], timeout: float = 10.0
    ) -> SipMessage:
        """The first message received (earlier or later) that ``match`` accepts."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for message in self.received[seen:]:
                if match(message):
                    return message
            seen = len(self.received)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching SIP message")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    def responses(self, call_id: str, method: str) -> list[SipMessage]:
        return [
            m
            for m in self.received
            if not m.is_request and m.call_id == call_id and m.method == method
        ]

    # -- messages -------------------------------------------------------------------------
    def invite(
        self,
        port: int,
        call_id: str,
        *,
        from_header: str | None = None,
        from_tag: str = "caller-1",
        branch: str | None = None,
        cseq: int = 1,
        rtp_port: int = 9,
        extra: str = "",
    ) -> str:
        """Send an initial INVITE offering PCMU; returns its branch."""
        branch = branch or new_branch()
        sender = f"{self.host}:{self.port}"
        from_header = from_header or f'"Caller" <sip:0312345678@{sender}>;tag={from_tag}'
        sdp = (
            f"v=0\no=caller 1 1 IN IP4 {self.host}\ns=-\nc=IN IP4 {self.host}\nt=0 0\n"
            f"m=audio {rtp_port} RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=sendrecv\n"
        )
        self.send(
            f"""INVITE sip:taxbot@127.0.0.1:{port} SIP/2.0
            Via: SIP/2.0/UDP {sender};branch={branch};rport
            From: {from_header}
            To: <sip:taxbot@127.0.0.1:{port}>
            Call-ID: {call_id}
            CSeq: {cseq} INVITE
            Contact: <sip:0312345678@{sender}>
            Max-Forwards: 70
            {extra}
            Content-Type: application/sdp

            {sdp}""",
            port,
        )
        return branch

    def in_dialog(
        self,
        method: str,
        port: int,
        answer: SipMessage,
        cseq: int,
        *,
        request_uri: str | None = None,
        extra: str = "",
        branch: str | None = None,
    ) -> str:
        """Send a request in the dialog that ``answer`` (the 2xx) set up; returns its branch."""
        branch = branch or new_branch()
        sender = f"{self.host}:{self.port}"
        contact = answer.get("contact") or f"<sip:taxbot@127.0.0.1:{port}>"
        uri = request_uri or contact[contact.index("<") + 1 : contact.index(">")]
        self.send(
            f"""{method} {uri} SIP/2.0
            Via: SIP/2.0/UDP {sender};branch={branch};rport
            From: {answer.get("from")}
            To: {answer.get("to")}
            Call-ID: {answer.call_id}
            CSeq: {cseq} {method}
            Contact: <sip:0312345678@{sender}>
            Max-Forwards: 70
            {extra}
            """,
            port,
        )
        return branch

    def reply(self, request: SipMessage, status: int, reason: str, port: int) -> None:
        """A response to a request the bot sent (e.g. 200 to its BYE)."""
        vias = "\n".join(f"Via: {v}" for v in request.get_all("via"))
        self.send(
            f"""SIP/2.0 {status} {reason}
            {vias}
            From: {request.get("from")}
            To: {request.get("to")}
            Call-ID: {request.call_id}
            CSeq: {request.get("cseq")}
            """,
            port,
        )
