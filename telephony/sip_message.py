"""Just enough SIP message handling for the dispatcher: parse, edit headers, serialise.

The dispatcher in front of the SIP workers is a stateless relay: it reads the start line,
Via, Call-ID, CSeq, To, Route, Record-Route, Contact and Max-Forwards, and leaves every
other header and the body as they came. A datagram that does not parse is dropped, as a
SIP stack would drop it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_MESSAGE_BYTES = 65_535
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
}
MULTI_VALUED = {"via", "route", "record-route"}  # comma-separated lists split into lines
_REQUEST_LINE = re.compile(r"^([A-Za-z]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 (\d{3})(?: (.*))?$")
_TOKEN = re.compile(r"^[!%'*+\-.0-9A-Z^_`a-z|~]+$")


class SipParseError(ValueError):
    """Not a SIP message (or one too broken to relay)."""


def canonical(name: str) -> str:
    """Lower-case long form of a header name ('v' -> 'via')."""
    lower = name.strip().lower()
    return COMPACT.get(lower, lower)


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas inside quotes and <...>."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and not quoted and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


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
        match = re.search(r";\s*tag=([^;>\s]+)", self.get("to") or "")
        return match.group(1) if match else None

    # -- wire ---------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        lines = [self.start_line]
        for key, value in self.headers:
            if canonical(key) != "content-length":
                lines.append(f"{key}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


def parse_head(head: bytes) -> SipMessage:
    """Parse the start line and headers (everything before the blank line)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("not UTF-8") from exc
    raw_lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    while raw_lines and not raw_lines[0].strip():
        raw_lines.pop(0)  # keep-alive CRLFs before a message
    if not raw_lines:
        raise SipParseError("empty")
    start = raw_lines[0].strip()
    if not (_REQUEST_LINE.match(start) or _STATUS_LINE.match(start)):
        raise SipParseError(f"bad start line {start[:40]!r}")
    headers: list[tuple[str, str]] = []
    for line in raw_lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and headers:  # folded continuation line
            key, value = headers[-1]
            headers[-1] = (key, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name.strip()):
            raise SipParseError(f"bad header line {line[:40]!r}")
        headers.append((name.strip(), value.strip()))
    exploded: list[tuple[str, str]] = []
    for key, value in headers:
        if canonical(key) in MULTI_VALUED:
            exploded += [(key, part) for part in split_list(value)]
        else:
            exploded.append((key, value))
    message = SipMessage(start, exploded)
    for required in ("via", "call-id", "cseq", "from", "to"):
        if message.get(required) is None:
            raise SipParseError(f"no {required} header")
    if len((message.get("cseq") or "").split()) != 2:
        raise SipParseError("bad CSeq")
    return message


def content_length(message: SipMessage) -> int:
    value = message.get("content-length")
    if value is None:
        return 0
    try:
        length = int(value)
    except ValueError as exc:
        raise SipParseError("bad Content-Length") from exc
    if not 0 <= length <= MAX_MESSAGE_BYTES:
        raise SipParseError("bad Content-Length")
    return length


def parse_datagram(data: bytes) -> SipMessage:
    """One SIP message from a UDP datagram; SipParseError if it is not one."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("too large")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    if not sep:
        raise SipParseError("no end of headers")
    message = parse_head(head)
    length = content_length(message) if message.get("content-length") is not None else len(body)
    if length > len(body):
        raise SipParseError("body shorter than Content-Length")
    message.body = body[:length]
    return message


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
            return host, int(rport)
        return host, self.port or 5060

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        sent_by = f"{host}:{self.port}" if self.port else host
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params)
        return f"SIP/2.0/{self.transport} {sent_by}{params}"


def parse_via(value: str) -> Via:
    match = re.match(r"^SIP\s*/\s*2\.0\s*/\s*(\w+)\s+([^;\s]+)\s*(.*)$", value.strip(), re.I)
    if not match:
        raise SipParseError(f"bad Via {value[:40]!r}")
    transport, sent_by, rest = match.groups()
    host, port = split_hostport(sent_by)
    params: list[tuple[str, str | None]] = []
    for part in rest.split(";"):
        part = part.strip()
        if part:
            key, sep, val = part.partition("=")
            params.append((key.strip(), val.strip() if sep else None))
    return Via(transport.upper(), host, port, params)


def split_hostport(text: str) -> tuple[str, int | None]:
    """'host:port', '[v6]:port', 'host' -> (host, port or None)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"bad host {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise SipParseError(f"bad host {text!r}")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SipParseError(f"bad port {text!r}")
    return host, int(port_text)


# -- URIs -----------------------------------------------------------------------------------------
@dataclass
class SipUri:
    """Where a sip: URI points: host, port, transport parameter, and loose routing."""

    host: str
    port: int | None
    transport: str | None
    lr: bool


_URI = re.compile(r"sips?:(?:[^@;>]*@)?(\[[^\]]+\](?::\d+)?|[^;>?:]+(?::\d+)?)([^>?]*)", re.I)


def uri_of(value: str) -> str:
    """The URI in a name-addr ('"x" <sip:a@b>;tag=1' -> 'sip:a@b') or an addr-spec."""
    match = re.search(r"<([^>]*)>", value)
    return (match.group(1) if match else value.split(";")[0]).strip()


def parse_uri(uri: str) -> SipUri:
    match = _URI.match(uri.strip())
    if not match:
        raise SipParseError(f"bad URI {uri[:60]!r}")
    host, port = split_hostport(match.group(1))
    params = {}
    for part in match.group(2).split(";"):
        key, sep, val = part.partition("=")
        if key.strip():
            params[key.strip().lower()] = val.strip() if sep else ""
    transport = params.get("transport")
    return SipUri(host, port, transport.upper() if transport else None, "lr" in params)


def replace_uri_hostport(value: str, host: str, port: int) -> str:
    """A Contact value with the host:port of its URI replaced (the rest kept)."""
    new = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return re.sub(
        r"(sips?:(?:[^@;>]*@)?)(\[[^\]]+\](?::\d+)?|[^;>?:]+(?::\d+)?)",
        lambda m: m.group(1) + new,
        value,
        count=1,
        flags=re.I,
    )


def response_to(request: SipMessage, status: int, reason: str, to_tag: str) -> SipMessage:
    """A response generated here (403, 503, 483): Via, From, To (+tag), Call-ID, CSeq."""
    headers = [(k, v) for k, v in request.headers if canonical(k) == "via"]
    to = request.get("to") or ""
    if request.to_tag is None:
        to = f"{to};tag={to_tag}"
    headers += [
        ("From", request.get("from") or ""),
        ("To", to),
        ("Call-ID", request.call_id),
        ("CSeq", request.get("cseq") or ""),
        ("Server", "taxline-voicebot"),
    ]
    return SipMessage(f"SIP/2.0 {status} {reason}", headers)
