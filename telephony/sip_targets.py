"""Where a request from the far end would make the bot send things: the hosts it names.

A caller's INVITE sets where the bot's worker sends its later requests (the Contact, the
Record-Route set) and its RTP and RTCP (the SDP's ``c=`` and ``a=rtcp:`` addresses).
If an allowed PBX relays an INVITE naming some other host, the bot would send media and
BYEs to an address of the sender's choice (reflection). The dispatcher therefore reads
these hosts from every request that sets them and refuses the request when one lies
outside ``allowed_peers``.

Plain string work over input already held to the message bounds
(telephony/sip_message_limits.py): the body is at most one message long and is scanned
once, line by line.
"""

from __future__ import annotations

from telephony.sip_message import SipMessage, SipParseError, parse_uri, split_list, uri_of

# Requests that set a dialog's remote target or carry an SDP offer or answer.
TARGET_SETTING_METHODS = frozenset({"INVITE", "UPDATE", "ACK", "PRACK"})
UNREADABLE = "?"  # a value that names no readable host: never allowed


def _uri_host(value: str) -> str:
    try:
        return parse_uri(uri_of(value)).host
    except SipParseError:
        return UNREADABLE


def sdp_hosts(body: bytes) -> list[str]:
    """The connection addresses of an SDP body (session and media ``c=`` lines, and
    ``a=rtcp:`` lines that name an address), as written, multicast TTL and count cut off.
    A body that is not SDP (no such lines) names none; multipart bodies are scanned
    whole, since pjsua reads the SDP part of them."""
    hosts: list[str] = []
    for raw in body.split(b"\n"):
        line = raw.strip().decode("latin-1")
        if line.startswith("c="):
            fields = line[2:].split()
            hosts.append(fields[2].split("/")[0] if len(fields) >= 3 else UNREADABLE)
        elif line.startswith("a=rtcp:"):
            fields = line[7:].split()
            if len(fields) >= 4:  # a=rtcp:<port> IN IP4 <address>
                hosts.append(fields[3])
            elif len(fields) != 1:
                hosts.append(UNREADABLE)
    return hosts


def named_targets(message: SipMessage) -> list[tuple[str, str]]:
    """(where, host) for each host a request from the far end names as a place the bot
    would send to: its Contact, its Record-Route entries, its SDP addresses. Empty for
    requests that set none of these (OPTIONS, BYE, INFO...)."""
    if not message.is_request or message.method not in TARGET_SETTING_METHODS:
        return []
    targets: list[tuple[str, str]] = []
    for value in message.get_all("contact"):
        for item in split_list(value):
            targets.append(("Contact", _uri_host(item)))
    for value in message.get_all("record-route"):
        targets.append(("Record-Route", _uri_host(value)))
    if message.body:
        targets += [("SDP", host) for host in sdp_hosts(message.body)]
    return targets
