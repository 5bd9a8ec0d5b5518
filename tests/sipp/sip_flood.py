"""A bounded burst of hostile SIP traffic at one loopback port, from its own process.

Used by tests/test_sip_flood.py and bench/sip_flood.py while real calls are up. Five
kinds of traffic, each at its own rate, for at most ``seconds`` and at most a fixed count:

* ``garbage``: random bytes in UDP datagrams (1 to 1,400 bytes);
* ``oversized``: datagrams of 9 to 60 kB that start like an INVITE;
* ``dropped_invites``: well-formed INVITEs with a header pjsua cannot parse
  (``Expires: x``), which pjsua drops without an answer, so each holds a call slot until
  the dispatcher's Timer B frees it;
* ``tcp_half_open``: TCP connections that send half a request and then nothing;
* ``tcp_never_read``: TCP connections that pipeline requests and never read the answers.

Only loopback destinations are accepted. Prints one JSON object: per kind, how many were
sent, over how long, and the rate.

    python tests/sipp/sip_flood.py PORT [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time
import uuid

RATES = {  # per second
    "garbage": 1000.0,
    "oversized": 100.0,
    "dropped_invites": 50.0,
    "tcp_half_open": 10.0,
    "tcp_never_read": 2.0,
}
MAX_COUNTS = {
    "garbage": 20_000,
    "oversized": 1_000,
    "dropped_invites": 500,
    "tcp_half_open": 40,
    "tcp_never_read": 8,
}
NEVER_READ_BYTES = 1_000_000  # requests each never-reading client sends at most
TCP_SEND_TIMEOUT_S = 0.05


def dropped_invite(port: int, local_port: int) -> bytes:
    call_id = uuid.uuid4().hex
    sdp = (
        "v=0\r\no=flood 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        f"INVITE sip:taxbot@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-{call_id};rport\r\n"
        f"From: <sip:flood@127.0.0.1>;tag={call_id[:8]}\r\n"
        f"To: <sip:taxbot@127.0.0.1:{port}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:flood@127.0.0.1:{local_port}>\r\nMax-Forwards: 70\r\nExpires: x\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def options(port: int, index: int) -> bytes:
    return (
        f"OPTIONS sip:taxbot@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-nr-{index}\r\n"
        f"From: <sip:flood@127.0.0.1>;tag={'r' * 400}\r\nTo: <sip:taxbot@127.0.0.1>\r\n"
        f"Call-ID: never-reads-{index}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def flood(port: int, seconds: float, host: str = "127.0.0.1") -> dict:
    """Send the burst; returns what was sent per kind."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("the flood is for loopback only")
    rng = random.Random(11)
    sent = dict.fromkeys(RATES, 0)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((host, 0))
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    local_port = udp.getsockname()[1]
    half_open: list[socket.socket] = []
    never_read: list[list] = []  # [socket, bytes sent, still writable]
    start = time.monotonic()
    deadline = start + seconds
    request_index = 0

    def due(kind: str, now: float) -> bool:
        return sent[kind] < MAX_COUNTS[kind] and sent[kind] < (now - start) * RATES[kind] + 1

    def send_udp(data: bytes) -> bool:
        try:
            udp.sendto(data, (host, port))
        except OSError:  # the socket buffer is full: this datagram is lost, as on a network
            return False
        return True

    try:
        while (now := time.monotonic()) < deadline:
            busy = False
            if due("garbage", now):
                send_udp(rng.randbytes(rng.randint(1, 1400)))
                sent["garbage"] += 1
                busy = True
            if due("oversized", now):
                size = rng.randint(9_000, 60_000)
                send_udp(b"INVITE sip:x SIP/2.0\r\nSubject: " + b"x" * size + b"\r\n\r\n")
                sent["oversized"] += 1
                busy = True
            if due("dropped_invites", now):
                send_udp(dropped_invite(port, local_port))
                sent["dropped_invites"] += 1
                busy = True
            if due("tcp_half_open", now):
                sent["tcp_half_open"] += 1
                try:
                    sock = socket.create_connection((host, port), timeout=1)
                    sock.sendall(b"INVITE sip:taxbot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP ")
                    half_open.append(sock)
                except OSError:
                    pass
                busy = True
            if due("tcp_never_read", now):
                sent["tcp_never_read"] += 1
                try:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    sock.settimeout(1)
                    sock.connect((host, port))
                    sock.settimeout(TCP_SEND_TIMEOUT_S)
                    never_read.append([sock, 0, True])
                except OSError:
                    pass
                busy = True
            for client in never_read:
                if not client[2] or client[1] >= NEVER_READ_BYTES:
                    continue
                request_index += 1
                data = options(port, request_index)
                try:
                    client[0].sendall(data)
                    client[1] += len(data)
                except OSError:  # closed by the dispatcher, or not reading either
                    client[2] = False
            if not busy:
                time.sleep(0.0005)
        elapsed = time.monotonic() - start
    finally:
        udp.close()
        for sock in half_open:
            sock.close()
        for client in never_read:
            client[0].close()
    return {
        "seconds": round(elapsed, 3),
        "sent": sent,
        "rates_per_s": {k: round(v / elapsed, 1) for k, v in sent.items()},
        "never_read_bytes_sent": sum(client[1] for client in never_read),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(flood(args.port, min(args.seconds, 30.0))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
