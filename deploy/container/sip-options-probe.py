#!/usr/bin/env python3
"""Health probe of the SIP edge: send one OPTIONS to Kamailio and expect 200.

The edge's configuration answers an OPTIONS addressed to itself with 200 OK (the PBX's
keep-alive), so this checks what the PBX relies on: that Kamailio reads and answers SIP.
Used by the image's HEALTHCHECK and the Kubernetes probes; standard library only.
Exit 0 on 200, 1 otherwise.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid


def probe(host: str, port: int, timeout_s: float) -> bool:
    """True when ``host:port`` answers an OPTIONS with ``SIP/2.0 200``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect((host, port))
        local_ip, local_port = sock.getsockname()
        tag = uuid.uuid4().hex
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local_ip}:{local_port};branch=z9hG4bK{tag[:16]};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{local_ip}>;tag={tag[16:24]}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {tag}@probe\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.send(request.encode("ascii"))
        try:
            reply = sock.recv(4096)
        except OSError:
            return False
    return reply.startswith(b"SIP/2.0 200")


def main() -> int:
    host = os.environ.get("EDGE_IP") or socket.gethostbyname(socket.gethostname())
    port = int(os.environ.get("EDGE_PORT", "5060"))
    ok = probe(host, port, float(os.environ.get("PROBE_TIMEOUT_S", "2")))
    if not ok:
        print(f"sip-options-probe: no 200 from {host}:{port}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
