"""The messages between the bot process and its SIP worker processes.

Each worker runs one pjsua (see telephony/sip_worker.py) and talks to the bot over one
Unix stream socket: 20 ms audio frames both ways, key presses, transfer progress, call
start and end, and commands (hang up, REFER) with their results. A message is a 7-byte
header (kind, call leg, payload length) and the payload: raw PCM for audio, UTF-8 JSON
for everything else. Only the standard library is used here: the worker imports this.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Iterator
from typing import Any

HEADER = struct.Struct("!BIH")  # kind, leg, payload length
MAX_PAYLOAD = 0xFFFF
# Calls one worker takes. The PyPI pjsua2 wheel (2.15.1) is built with pjproject's default
# PJSUA_MAX_CALLS = 4 and pjsua clamps uaConfig.maxCalls to it: a fifth simultaneous
# INVITE to one pjsua is answered 486 Busy Here by pjsua itself, and pjsua is one instance
# per process. Hence one worker process per four calls.
PJSUA_MAX_CALLS = 4


class Kind(enum.IntEnum):
    # worker -> bot
    READY = 1  # {"port": sip_port} or {"error": text}
    INCOMING = 2  # a call was answered: {"caller", "sip_call_id", "source"}
    PCM = 3  # 20 ms of the caller's audio (8 kHz int16)
    DTMF = 4  # {"digit"}
    TRANSFER_STATUS = 5  # {"code", "reason", "final"}
    DISCONNECTED = 6  # {"code", "reason", "sip_call_id"}
    DRAINED = 7  # the bot audio queued before DRAIN has been played
    RESULT = 8  # {"id", "error"}: a command was carried out (error None) or not
    # bot -> worker
    AUDIO = 20  # 20 ms of bot audio to play
    DRAIN = 21  # play what is queued without waiting for more; answer DRAINED
    HANGUP = 22  # {"id"}
    REFER = 23  # {"id", "uri"}
    SHUTDOWN = 24  # hang up everything, destroy pjsua, exit


def encode(kind: Kind, leg: int = 0, payload: bytes | dict[str, Any] = b"") -> bytes:
    """One message, ready to write to the socket."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    if len(data) > MAX_PAYLOAD:
        raise ValueError(f"SIP worker message too large ({len(data)} bytes)")
    return HEADER.pack(kind, leg, len(data)) + data


def decode_json(payload: bytes) -> dict[str, Any]:
    return json.loads(payload.decode("utf-8")) if payload else {}


class Decoder:
    """Splits a byte stream into (kind, leg, payload) messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[Kind, int, bytes]]:
        self._buffer += data
        while len(self._buffer) >= HEADER.size:
            kind, leg, length = HEADER.unpack_from(self._buffer)
            end = HEADER.size + length
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[HEADER.size : end])
            del self._buffer[:end]
            yield Kind(kind), leg, payload
