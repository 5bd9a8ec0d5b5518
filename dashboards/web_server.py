"""How the web app is served: uvicorn's settings from ``WebSettings``, and a deadline on
reading a request's headers.

uvicorn bounds little by default: any number of connections, headers of any size when
they arrive in one read (h11 bounds only an incomplete head; httptools, if installed,
not even that), and no time limit on a client that sends its headers a byte at a time.
Here the parser is fixed to h11 and every request's line and headers are bounded
(``max_header_bytes``; larger: 400), connections are limited (more get 503), idle
keep-alive connections close after ``keep_alive_s``, and a client that has not sent a
whole request line and headers within ``header_timeout_s`` gets 408 and is closed.
``X-Forwarded-For`` is believed only from the configured ``trusted_proxies``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from dashboards.config import WebSettings

REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 15\r\n\r\nRequest Timeout"
)


class _HeadBoundedConnection(h11.Connection):
    """h11's server side, refusing a request whose line and headers exceed a size.

    h11's own bound applies only to a head still incomplete in its buffer: a whole
    100 KiB head arriving in one read passes it. This checks every parsed request.
    """

    def __init__(self, max_head_bytes: int):
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self.max_head_bytes = max_head_bytes

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request) and head_size(event) > self.max_head_bytes:
            raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


def head_size(request: h11.Request) -> int:
    """Bytes of a request line and headers as sent (give or take whitespace)."""
    line = len(request.method) + len(request.target) + 12
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers)


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline and a size bound for each request's head.

    The deadline runs from the moment the connection is waiting for a request (opened,
    or the previous response sent) until the whole head has been parsed; a connection
    that trickles its headers cannot hold a place under ``limit_concurrency`` for ever.
    """

    header_timeout_s: float = 10.0
    max_head_bytes: int = 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.conn = _HeadBoundedConnection(self.max_head_bytes)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is in: the request runs
            self._cancel_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_header_deadline()  # waiting for the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(
            self.header_timeout_s, self._header_deadline_passed
        )

    def _cancel_header_deadline(self) -> None:
        if getattr(self, "_header_deadline", None) is not None:
            self._header_deadline.cancel()  # type: ignore[union-attr]
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        transport = self.transport
        # After a WebSocket upgrade another protocol owns the transport: not ours to end.
        if transport.is_closing() or transport.get_protocol() is not self:
            return
        if self.conn.their_state is h11.IDLE:
            if self.conn.our_state is h11.IDLE:
                transport.write(REQUEST_TIMEOUT)
            transport.close()


def server_config(app: Any, web: WebSettings, **overrides: Any) -> Any:
    """The ``uvicorn.Config`` the service serves ``app`` with (``overrides``: e.g. port)."""
    import uvicorn

    limits = {"header_timeout_s": web.header_timeout_s, "max_head_bytes": web.max_header_bytes}
    protocol = type("WebAppHttpProtocol", (HeaderDeadlineProtocol,), limits)
    options: dict[str, Any] = {
        "host": web.host,
        "port": web.port,
        "log_level": "warning",
        "lifespan": "on",
        "http": protocol,
        "h11_max_incomplete_event_size": web.max_header_bytes,
        "limit_concurrency": web.max_connections,
        "timeout_keep_alive": web.keep_alive_s,
        "proxy_headers": bool(web.trusted_proxies),
        "forwarded_allow_ips": list(web.trusted_proxies) or None,
        "server_header": False,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
