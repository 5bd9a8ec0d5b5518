"""A call's RTP and RTCP sockets take packets from the far end's SDP address only.

pjmedia reads RTP from any source: a stranger who finds a worker's media port could speak
into a live call, keep a call whose caller has gone alive past the media timeout, and
after ten packets in a row pjmedia switches where it sends the call's audio to the
stranger (``PJMEDIA_RTP_NAT_PROBATION_CNT``; pjsua opens its UDP media transport without
``PJMEDIA_UDP_NO_SRC_ADDR_CHECKING`` and pjsua2 has no setting for it, nor for source
filtering). So, once a call's media is negotiated, the worker ``connect()``s the call's
RTP and RTCP sockets to the address and ports the far end gave in its SDP (``c=``,
``m=``, ``a=rtcp``): the kernel then drops datagrams from every other source before
pjmedia sees them, and pjmedia, which sends with an explicit address, sends as before.

The sockets belong to pjmedia; pjsua2 names their local ports but not their descriptors,
so they are found among this process's descriptors (Linux ``/proc/self/fd``) by type and
local address. A far end that sends from another port than the one it announced (a phone
behind NAT without symmetric RTP) is not heard: the bot talks only to the PBX or SBC,
which sends from the port it announces.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import stat

log = logging.getLogger(__name__)

FD_DIR = "/proc/self/fd"
INET_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def split_address(text: str) -> tuple[str, int] | None:
    """'203.0.113.5:4000' or '[2001:db8::1]:4000' -> (host, port); None if unusable
    (empty, no port, port 0, or the unspecified address of a held call)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) == 0:
        return None
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_unspecified:
        return None
    return host, int(port)


def _udp_sockets_at(local: tuple[str, int]) -> list[int]:
    """Descriptors of this process's UDP sockets bound to ``local`` (host, port); a
    wildcard-bound socket on that port matches too."""
    host, port = local
    found = []
    try:
        descriptors = os.listdir(FD_DIR)
    except OSError:
        return []
    for name in descriptors:
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            with socket.socket(fileno=os.dup(fd)) as sock:
                if sock.type != socket.SOCK_DGRAM or sock.family not in INET_FAMILIES:
                    continue  # the bot's Unix socket, a netlink socket...
                bound = sock.getsockname()
        except (OSError, ValueError):
            continue  # closed meanwhile
        if bound[1] == port and bound[0] in (host, "0.0.0.0", "::"):
            found.append(fd)
    return found


def lock_to_peer(local: tuple[str, int], peer: tuple[str, int]) -> bool:
    """Connect the UDP socket bound to ``local`` to ``peer``: from now on it receives only
    what ``peer`` sends. False (and nothing changed) unless exactly one socket matches."""
    fds = _udp_sockets_at(local)
    if len(fds) != 1:
        log.warning(
            "media socket %s:%d not found (%d matches): RTP from any source is heard",
            *local,
            len(fds),
        )
        return False
    try:
        with socket.socket(fileno=os.dup(fds[0])) as sock:
            sock.connect(peer)
    except OSError as exc:
        log.warning("media socket %s:%d: could not lock to %s:%d: %s", *local, *peer, exc)
        return False
    return True


def _port_of(text: str) -> int | None:
    port = text.rpartition(":")[2]
    return int(port) if port.isdigit() and 0 < int(port) < 65536 else None


def lock_stream(bound_host: str, local_rtp: str, local_rtcp: str, rtp: str, rtcp: str) -> bool:
    """Lock one audio stream's RTP and RTCP sockets to the far end's SDP addresses.
    ``bound_host`` is the address the worker's media sockets are bound to; the others are
    pjsua2's 'host:port' texts (only the port is read of the local names, which may carry
    the public address instead). True if the RTP socket is locked."""
    local_rtp_port, remote_rtp = _port_of(local_rtp), split_address(rtp)
    if local_rtp_port is None or remote_rtp is None:
        log.warning("media %s -> %r: no peer address to lock to", local_rtp, rtp)
        return False
    locked = lock_to_peer((bound_host, local_rtp_port), remote_rtp)
    local_rtcp_port, remote_rtcp = _port_of(local_rtcp), split_address(rtcp)
    if locked and local_rtcp_port not in (None, local_rtp_port) and remote_rtcp is not None:
        lock_to_peer((bound_host, local_rtcp_port), remote_rtcp)
    return locked
