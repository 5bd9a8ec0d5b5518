"""Just enough SIP message handling for the dispatcher: parse, edit headers, serialise.

The dispatcher in front of the SIP workers is a stateless relay: it reads the start line,
Via, Call-ID, CSeq, To, Route, Record-Route, Contact and Max-Forwards, and leaves every
other header and the body as they came. A datagram that does not parse is dropped, as a
SIP stack would drop it.

Everything here reads bytes from strangers, so every step is plain string work in one
pass (no backtracking regular expression), over input already held to the bounds of
telephony/sip_message_limits.py. Two kinds of failure: ``SipParseError`` (not SIP, or over
a bound: dropped unanswered) and its subclass ``SipBadRequest`` (a readable request that
must not be relayed, e.g. two Call-IDs or a bare CR/LF that pjsua would read differently
from the dispatcher: answered 400). Nothing else is raised on any input.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field

from telephony.sip_message_limits import (
    MAX_CONTENT_LENGTH_DIGITS,
    MAX_CSEQ,
    MAX_HEAD_BYTES,
    MAX_HEADER_LINES,
    MAX_LINE_BYTES,
    MAX_LIST_ITEMS,
    MAX_MESSAGE_BYTES,
)

COMPACT = {
    "v": "via",
    "i": "call-id",
    "f": "from",
    "t": "to",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "e": "content-encoding",
    "k": "supported",
    "s": "subject",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "u": "allow-events",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}
MULTI_VALUED = {"via", "route", "record-route"}  # comma-separated lists split into lines
# Headers a message carries at most once (RFC 3261 20, RFC 3515, 3891, 3911, 4028, 3262,
# 6665). A second one is read differently by different stacks (the dispatcher routes by
# the first Call-ID, pjsua by the last), so such a message is refused, never relayed.
SINGLE_VALUED = frozenset(
    {
        "call-id",
        "cseq",
        "from",
        "to",
        "max-forwards",
        "content-length",
        "content-type",
        "content-disposition",
        "mime-version",
        "expires",
        "min-expires",
        "date",
        "timestamp",
        "subject",
        "priority",
        "organization",
        "server",
        "user-agent",
        "retry-after",
        "reply-to",
        "refer-to",
        "referred-by",
        "replaces",
        "join",
        "session-expires",
        "min-se",
        "event",
        "rack",
        "rseq",
    }
)
_TOKEN_CHARS = frozenset(
    "!%'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz|~"
)
_HOSTNAME_CHARS = frozenset("-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_DIGITS = frozenset("0123456789")
# One character class, searched once per line: linear on any input.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_LIST_SPECIALS = re.compile(r'[",<>]')
# A quoted string from its opening quote: possessive, so it never backtracks (linear).
_QUOTED = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)


def _is_token(text: str) -> bool:
    return bool(text) and set(text) <= _TOKEN_CHARS


def _is_digits(text: str, max_digits: int) -> bool:
    """ASCII digits only (int() would also take '+1', '1_0', ' 1' and other scripts' digits)."""
    return 0 < len(text) <= max_digits and set(text) <= _DIGITS


class SipParseError(ValueError):
    """Not a SIP message, or one over a bound or too broken to answer: dropped."""


class SipBadRequest(SipParseError):
    """A message that was read but must not be relayed; a request gets 400 ``reason``."""

    def __init__(self, reason: str, message: SipMessage):
        super().__init__(reason)
        self.reason = reason
        self.message = message


@functools.lru_cache(maxsize=1024)
def canonical(name: str) -> str:
    """Lower-case long form of a header name ('v' -> 'via'); cached, as every header
    lookup calls it for every header of the message."""
    lower = name.strip().lower()
    return COMPACT.get(lower, lower)


def _end_of_quoted(text: str, start: int) -> int:
    """The index just past the quoted string opening at ``text[start]`` (a '"');
    SipParseError if it is not closed. Backslash escapes the next character."""
    match = _QUOTED.match(text, start)
    if match is None:
        raise SipParseError("unterminated quoted string")
    return match.end()


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas inside quotes and <...>.

    One pass that stops only at the special characters outside quoted strings; an
    unclosed quote runs to the end."""
    if "," not in value:
        return [value.strip()] if value.strip() else []
    parts: list[str] = []
    depth, start, pos = 0, 0, 0
    while (match := _LIST_SPECIALS.search(value, pos)) is not None:
        i = pos = match.start()
        pos += 1
        ch = value[i]
        if ch == '"':
            quoted = _QUOTED.match(value, i)
            if quoted is None:
                break
            pos = quoted.end()
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif depth == 0:  # a comma
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def split_name_addr(value: str) -> tuple[str, str, str]:
    """A From/To/Contact/Route value as (text before the URI, URI, text after it).

    '"Taro" <sip:a@b>;tag=1' -> ('"Taro" <', 'sip:a@b', '>;tag=1'); an addr-spec without
    angle brackets ends at the first ';' (RFC 3261 20: a URI with ';' must be bracketed).
    SipParseError if the value is not a name-addr or an addr-spec."""
    i = len(value) - len(value.lstrip())
    if value.startswith('"', i):
        after_name = _end_of_quoted(value, i)
        lt = value.find("<", after_name)
        if lt < 0 or value[after_name:lt].strip():
            raise SipParseError("display name without <URI>")
    else:
        lt = value.find("<", i)
        if lt >= 0 and not set(value[i:lt]) <= _TOKEN_CHARS | {" ", "\t"}:
            lt = -1  # '<' after a parameter: not a name-addr
    if lt >= 0:
        gt = value.find(">", lt + 1)
        if gt < 0:
            raise SipParseError("'<' without '>'")
        uri = value[lt + 1 : gt]
        if "<" in uri or ":" not in uri or uri.strip() != uri or not uri:
            raise SipParseError("bad URI in <...>")
        return value[: lt + 1], uri, value[gt:]
    semicolon = value.find(";", i)
    end = len(value) if semicolon < 0 else semicolon
    uri = value[i:end].rstrip()
    if not uri or ":" not in uri or any(c in uri for c in ' <>"'):
        raise SipParseError("bad address")
    return value[:i], uri, value[i + len(uri) :]


def header_params(value: str) -> dict[str, str]:
    """The parameters after the address of a From/To/Contact value, names lower-cased
    ('<sip:a@b;x=1>;tag=9' -> {'tag': '9'}: the URI's own parameters are not included)."""
    _, _, after = split_name_addr(value)
    params: dict[str, str] = {}
    for part in after.lstrip(">").split(";"):
        key, sep, val = part.partition("=")
        key = key.strip().lower()
        if key and key not in params:
            params[key] = val.strip() if sep else ""
    return params


@dataclass
class SipMessage:
    """One SIP request or response; header order and spelling are kept."""

    start_line: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    # -- start line ---------------------------------------------------------------------------
    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        """The request method, or for a response the method of its CSeq."""
        if self.is_request:
            return self.start_line.split(" ", 1)[0].upper()
        cseq = self.get("cseq") or ""
        return cseq.split()[-1].upper() if cseq.split() else ""

    @property
    def request_uri(self) -> str:
        return self.start_line.split(" ")[1]

    @property
    def status(self) -> int:
        return int(self.start_line.split(" ")[1]) if not self.is_request else 0

    # -- headers ------------------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        """The first value of a header (compact forms understood), or None."""
        wanted = canonical(name)
        for key, value in self.headers:
            if canonical(key) == wanted:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        wanted = canonical(name)
        return [value for key, value in self.headers if canonical(key) == wanted]

    def remove_first(self, name: str) -> str | None:
        """Remove and return the first value of a header."""
        wanted = canonical(name)
        for i, (key, value) in enumerate(self.headers):
            if canonical(key) == wanted:
                del self.headers[i]
                return value
        return None

    def prepend(self, name: str, value: str) -> None:
        """Add a header above any other of the same name (or at the top)."""
        wanted = canonical(name)
        for i, (key, _) in enumerate(self.headers):
            if canonical(key) == wanted:
                self.headers.insert(i, (name, value))
                return
        self.headers.insert(0, (name, value))

    def replace_first(self, name: str, value: str) -> None:
        wanted = canonical(name)
        for i, (key, _) in enumerate(self.headers):
            if canonical(key) == wanted:
                self.headers[i] = (key, value)
                return
        self.headers.append((name, value))

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    @property
    def to_tag(self) -> str | None:
        """The tag parameter of To (None before the dialog exists or if To is unreadable)."""
        return header_tag(self.get("to"))

    @property
    def from_tag(self) -> str | None:
        return header_tag(self.get("from"))

    @property
    def cseq_number(self) -> int:
        """The CSeq sequence number (parse_head has checked it is one)."""
        return int((self.get("cseq") or "0").split()[0])

    # -- wire ---------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        lines = [self.start_line]
        for key, value in self.headers:
            if canonical(key) != "content-length":
                lines.append(f"{key}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


def header_tag(value: str | None) -> str | None:
    """The tag parameter of a From or To value (never one inside the URI's <>), or None."""
    if value is None:
        return None
    try:
        tag = header_params(value).get("tag")
    except SipParseError:
        return None
    return tag or None


def find_head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Where the head ends in ``data`` (searched from ``start``, at most MAX_HEAD_BYTES
    beyond it): (index of the blank line, its length), or (-1, 0) if not found there.
    The first blank line counts, CRLF or bare LF, as a tolerant stack reads it."""
    limit = start + MAX_HEAD_BYTES + 4
    crlf = data.find(b"\r\n\r\n", start, limit)
    lf = data.find(b"\n\n", start, limit if crlf < 0 else crlf)
    if lf >= 0:
        return lf, 2
    return (crlf, 4) if crlf >= 0 else (-1, 0)


def _check_start_line(line: str) -> None:
    """'METHOD Request-URI SIP/2.0' or 'SIP/2.0 code reason'; SipParseError otherwise."""
    if _CONTROL.search(line):
        raise SipParseError("control character in the start line")
    if line.startswith("SIP/2.0 "):
        code, _, _reason = line[8:].partition(" ")
        if len(code) != 3 or not _is_digits(code, 3) or not 100 <= int(code) <= 699:
            raise SipParseError(f"bad status line {line[:40]!r}")
        return
    parts = line.split(" ")
    if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha():
        raise SipParseError(f"bad start line {line[:40]!r}")
    if not parts[0].isascii() or not parts[1] or ":" not in parts[1]:
        raise SipParseError(f"bad start line {line[:40]!r}")


def _split_lines(text: str) -> list[str]:
    """The head's lines. A CR or LF left inside a line is kept for _read_headers to
    refuse: other stacks end lines there, so the dispatcher and the worker would see
    different headers."""
    if text.count("\n") > MAX_HEADER_LINES + 1:
        raise SipParseError(f"more than {MAX_HEADER_LINES} header lines")
    return text.split("\r\n") if "\r\n" in text else text.split("\n")


def _read_headers(lines: list[str]) -> tuple[list[tuple[str, str]], str | None]:
    """(name, value) pairs with folded lines joined, and the first defect found (a
    control character in a value) or None. SipParseError if a line is not a header."""
    headers: list[tuple[str, str]] = []
    defect = None
    for line in lines:
        if len(line) > MAX_LINE_BYTES:
            raise SipParseError(f"header line over {MAX_LINE_BYTES} bytes")
        if not line:
            continue
        bad = _CONTROL.search(line) if defect is None else None
        if bad is not None:
            crlf = bad.group() in "\r\n"
            defect = "bare CR or LF in a header" if crlf else "control character in a header"
        if line[0] in " \t":  # folded continuation line
            if not headers:
                raise SipParseError("continuation line before any header")
            key, value = headers[-1]
            headers[-1] = (key, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        name = name.rstrip(" \t")
        if not sep or not _is_token(name):
            raise SipParseError(f"bad header line {line[:40]!r}")
        headers.append((name, value.strip(" \t")))
    return headers, defect


def _explode(headers: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], str | None]:
    """List headers split into one value each (at most MAX_LIST_ITEMS per header), and
    the first single-valued header seen twice, if any."""
    exploded: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    seen: set[str] = set()
    duplicate = None
    for key, value in headers:
        name = canonical(key)
        if name in MULTI_VALUED:
            parts = split_list(value)
            counts[name] = counts.get(name, 0) + len(parts)
            if counts[name] > MAX_LIST_ITEMS:
                raise SipParseError(f"more than {MAX_LIST_ITEMS} {name} values")
            exploded += [(key, part) for part in parts]
            continue
        if name in SINGLE_VALUED:
            if name in seen and duplicate is None:
                duplicate = name
            seen.add(name)
        exploded.append((key, value))
    return exploded, duplicate


def display_name(name: str) -> str:
    """A canonical header name as usually written ('call-id' -> 'Call-ID')."""
    return _SPELLING.get(name) or "-".join(part.capitalize() for part in name.split("-"))


_SPELLING = {"call-id": "Call-ID", "cseq": "CSeq", "mime-version": "MIME-Version", "rack": "RAck"}


def _defect_in_vias(vias: list[str]) -> str | None:
    for value in vias:
        try:
            parse_via(value)
        except SipParseError:
            return "bad Via"
    return None


def _defect_in_values(message: SipMessage) -> str | None:
    """The first header value the dispatcher or a worker would misread, or None."""
    call_id = message.call_id
    if not call_id or any(c in call_id for c in ' \t<>"'):
        return "bad Call-ID"
    number, _, method = (message.get("cseq") or "").partition(" ")
    method = method.strip(" \t")
    if not _is_digits(number, 10) or int(number) > MAX_CSEQ or not _is_token(method):
        return "bad CSeq"
    if message.is_request and method.upper() != message.method:
        return "CSeq method differs from the request's"
    for name in ("from", "to"):
        try:
            split_name_addr(message.get(name) or "")
        except SipParseError:
            return f"bad {display_name(name)}"
    hops = message.get("max-forwards")
    if hops is not None and not (_is_digits(hops, 3) and int(hops) <= 255):
        return "bad Max-Forwards"
    length = message.get("content-length")
    if length is not None and not (
        _is_digits(length, MAX_CONTENT_LENGTH_DIGITS) and int(length) <= MAX_MESSAGE_BYTES
    ):
        return "bad Content-Length"
    for name in ("route", "record-route"):
        for value in message.get_all(name):
            try:
                before, _, _ = split_name_addr(value)
            except SipParseError:
                return f"bad {display_name(name)}"
            if not before.endswith("<"):
                return f"bad {display_name(name)}"
    contact = message.get_all("contact")
    if contact == ["*"]:
        return None
    items = [item for value in contact for item in split_list(value)]
    if len(items) > MAX_LIST_ITEMS or (contact and not items):
        return "bad Contact"
    if len(items) > 1 and message.is_request and message.method != "REGISTER":
        # A dialog has one remote target: counted by value, whether the values come on
        # several lines or comma-separated on one (pjsua would take one, the bot another).
        return "more than one Contact"
    try:
        for item in items:
            split_name_addr(item)
    except SipParseError:
        return "bad Contact"
    return None


def parse_head(head: bytes) -> SipMessage:
    """Parse the start line and headers (everything before the blank line).

    SipParseError if it is not SIP, is over a bound, or has no readable Via, Call-ID,
    CSeq, From and To to answer with; SipBadRequest (with the message) if it can be
    answered but must not be relayed. Linear in the size of ``head``."""
    if len(head) > MAX_HEAD_BYTES:
        raise SipParseError(f"head over {MAX_HEAD_BYTES} bytes")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("not UTF-8") from exc
    text = text.lstrip("\r\n")  # keep-alive CRLFs before a message
    if not text:
        raise SipParseError("empty")
    lines = _split_lines(text)
    start = lines[0]
    if len(start) > MAX_LINE_BYTES:
        raise SipParseError(f"start line over {MAX_LINE_BYTES} bytes")
    _check_start_line(start)
    headers, defect = _read_headers(lines[1:])
    exploded, duplicate = _explode(headers)
    message = SipMessage(start, exploded)
    for required in ("via", "call-id", "cseq", "from", "to"):
        if message.get(required) is None:
            raise SipParseError(f"no {required} header")
    vias = message.get_all("via")
    parse_via(vias[0])  # the address any answer goes to: unreadable, no answer
    if len((message.get("cseq") or "").split()) != 2:
        raise SipParseError("bad CSeq")
    if duplicate is not None:
        defect = f"more than one {display_name(duplicate)} header"
    defect = defect or _defect_in_values(message) or _defect_in_vias(vias[1:])
    if defect is not None:
        raise SipBadRequest(defect, message)
    return message


def content_length(message: SipMessage) -> int:
    """The Content-Length (0 if absent); SipParseError if it is not one number in range,
    or appears twice (the message's end would be ambiguous)."""
    values = message.get_all("content-length")
    if not values:
        return 0
    value = values[0]
    if len(values) > 1 or not _is_digits(value, MAX_CONTENT_LENGTH_DIGITS):
        raise SipParseError("bad Content-Length")
    length = int(value)
    if length > MAX_MESSAGE_BYTES:
        raise SipParseError("bad Content-Length")
    return length


def parse_datagram(data: bytes) -> SipMessage:
    """One SIP message from a UDP datagram; SipParseError (or SipBadRequest) if it is
    not one that may be relayed."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("too large")
    end, sep = find_head_end(data)
    if end < 0:
        if len(data) > MAX_HEAD_BYTES:
            raise SipParseError(f"no end of headers within {MAX_HEAD_BYTES} bytes")
        raise SipParseError("no end of headers")
    body = data[end + sep :]
    try:
        message = parse_head(data[:end])
    except SipBadRequest as exc:
        exc.message.body = body[: _body_length(exc.message, body)]
        raise
    message.body = body[: _body_length(message, body)]
    if message.get("content-length") is not None and content_length(message) > len(body):
        raise SipParseError("body shorter than Content-Length")  # cut short: dropped
    return message


def _body_length(message: SipMessage, body: bytes) -> int:
    try:
        length = content_length(message)
    except SipParseError:
        return 0
    return length if message.get("content-length") is not None else len(body)


# -- Via ----------------------------------------------------------------------------------------
@dataclass
class Via:
    """One Via value: 'SIP/2.0/UDP host:port;branch=...;rport'."""

    transport: str
    host: str
    port: int | None
    params: list[tuple[str, str | None]]

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key.lower() == name:
                return value if value is not None else ""
        return None

    def set_param(self, name: str, value: str | None) -> None:
        for i, (key, _) in enumerate(self.params):
            if key.lower() == name:
                self.params[i] = (key, value)
                return
        self.params.append((name, value))

    def reply_address(self) -> tuple[str, int]:
        """Where responses go (RFC 3261 18.2.2 with RFC 3581 rport)."""
        host = self.param("received") or self.host
        rport = self.param("rport")
        if rport:
            return host, _port_number(rport)
        return host, self.port or 5060

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        sent_by = f"{host}:{self.port}" if self.port else host
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params)
        return f"SIP/2.0/{self.transport} {sent_by}{params}"


def _port_number(text: str) -> int:
    if not _is_digits(text, 5) or not 0 < int(text) < 65536:
        raise SipParseError(f"bad port {text[:20]!r}")
    return int(text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_via(value: str) -> Via:
    """'SIP/2.0/UDP host:port;branch=...' (spaces allowed around the slashes); every
    part checked, so that what the dispatcher later reads from it (the reply address,
    the branch) cannot fail."""
    sent, _, rest = value.strip().partition(";")
    words = sent.split()
    if len(words) < 2:
        raise SipParseError(f"bad Via {value[:40]!r}")
    protocol = "".join(words[:-1]).split("/")
    if len(protocol) != 3 or protocol[0].upper() != "SIP" or protocol[1] != "2.0":
        raise SipParseError(f"bad Via {value[:40]!r}")
    transport = protocol[2]
    if not _is_token(transport):
        raise SipParseError(f"bad Via transport {value[:40]!r}")
    host, port = split_hostport(words[-1])
    params: list[tuple[str, str | None]] = []
    for part in rest.split(";") if rest else ():
        key, sep, val = part.partition("=")
        key, val = key.strip(), val.strip()
        if not _is_token(key) or (sep and not val) or any(c in val for c in ' \t"'):
            raise SipParseError(f"bad Via parameter {part[:40]!r}")
        params.append((key, val if sep else None))
    via = Via(transport.upper(), host, port, params)
    rport = via.param("rport")
    if rport:
        _port_number(rport)
    received = via.param("received")
    if received is not None and not _is_ip(received):
        raise SipParseError(f"bad Via received {received[:40]!r}")
    branch = via.param("branch")
    if branch is not None and not _is_token(branch):
        raise SipParseError(f"bad Via branch {branch[:40]!r}")
    return via


def split_hostport(text: str) -> tuple[str, int | None]:
    """'host:port', '[v6]:port', 'host' -> (host, port or None); SipParseError unless
    host is a host name, an IPv4 address or a bracketed IPv6 address."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"bad host {text[:60]!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"bad host {text[:60]!r}")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise SipParseError(f"bad host {text[:60]!r}") from exc
    else:
        host, sep, port_text = text.partition(":")
        if not host or not set(host) <= _HOSTNAME_CHARS or (sep and not port_text):
            raise SipParseError(f"bad host {text[:60]!r}")
    if not port_text:
        return host, None
    return host, _port_number(port_text)


# -- URIs -----------------------------------------------------------------------------------------
@dataclass
class SipUri:
    """Where a sip: URI points: host, port, transport parameter, and loose routing."""

    host: str
    port: int | None
    transport: str | None
    lr: bool


def uri_of(value: str) -> str:
    """The URI in a name-addr ('"x" <sip:a@b>;tag=1' -> 'sip:a@b') or an addr-spec;
    SipParseError if there is none."""
    return split_name_addr(value)[1]


def _hostport_span(uri: str) -> tuple[int, int]:
    """Where host[:port] is in a sip:/sips: URI: (start, end)."""
    scheme, sep, _ = uri.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips"):
        raise SipParseError(f"not a SIP URI {uri[:60]!r}")
    start = len(scheme) + 1
    question = uri.find("?", start)
    at = uri.find("@", start, question if question >= 0 else len(uri))
    if at >= 0:
        start = at + 1
    end = start
    if uri.startswith("[", start):
        end = uri.find("]", start)
        if end < 0:
            raise SipParseError(f"bad URI {uri[:60]!r}")
    ends = [i for i in (uri.find(";", end), uri.find("?", end)) if i >= 0]
    return start, min(ends) if ends else len(uri)


def parse_uri(uri: str) -> SipUri:
    uri = uri.strip()
    start, end = _hostport_span(uri)
    host, port = split_hostport(uri[start:end])
    params = {}
    question = uri.find("?", end)
    for part in uri[end : question if question >= 0 else len(uri)].split(";"):
        key, sep, val = part.partition("=")
        if key.strip():
            params[key.strip().lower()] = val.strip() if sep else ""
    transport = params.get("transport")
    return SipUri(host, port, transport.upper() if transport else None, "lr" in params)


def replace_uri_hostport(value: str, host: str, port: int) -> str:
    """A Contact value with the host:port of its URI replaced (the rest kept); the value
    unchanged if it holds no SIP URI."""
    new = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        before, uri, after = split_name_addr(value)
        start, end = _hostport_span(uri)
    except SipParseError:
        return value
    return before + uri[:start] + new + uri[end:] + after


def _clean(value: str) -> str:
    """A value cut before its first control character, to be echoed in a response."""
    bad = _CONTROL.search(value)
    return value if bad is None else value[: bad.start()]


def response_to(request: SipMessage, status: int, reason: str, to_tag: str | None) -> SipMessage:
    """A response generated here (100, 400, 483, 503) to an allowed peer, as RFC 3261 8.2.6
    says: every Via (at most MAX_LIST_ITEMS), From, To (+tag, none on a 100), Call-ID,
    CSeq."""
    headers = [(k, _clean(v)) for k, v in request.headers if canonical(k) == "via"]
    return _response(request, status, reason, to_tag, headers, [("Server", "taxline-voicebot")])


def minimal_response(request: SipMessage, status: int, reason: str, to_tag: str) -> SipMessage:
    """The smallest response a UAC can match (403 to a stranger): the top Via only,
    From, To (+tag), Call-ID, CSeq; never longer than the request it answers."""
    top = next((k, _clean(v)) for k, v in request.headers if canonical(k) == "via")
    return _response(request, status, reason, to_tag, [top], [])


def _response(
    request: SipMessage,
    status: int,
    reason: str,
    to_tag: str | None,
    vias: list[tuple[str, str]],
    extra: list[tuple[str, str]],
) -> SipMessage:
    to = _clean(request.get("to") or "")
    if request.to_tag is None and to_tag is not None:
        to = f"{to};tag={to_tag}"
    headers = [
        *vias,
        ("From", _clean(request.get("from") or "")),
        ("To", to),
        ("Call-ID", _clean(request.call_id)),
        ("CSeq", _clean(request.get("cseq") or "")),
        *extra,
    ]
    return SipMessage(f"SIP/2.0 {status} {reason}", headers)
