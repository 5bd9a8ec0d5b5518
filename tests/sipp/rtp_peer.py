"""A caller's media side for SIP tests: real RTP over UDP, driven from Python.

sipp does the signalling and puts this socket's port in its SDP, so the bot's RTP comes
here, off the real network stack. The peer sends PCMU continuously like a phone (silence
between utterances), plays 8 kHz clips, sends RFC 4733 key presses in the same RTP
stream (same SSRC: pjmedia ignores events from another SSRC), and records everything the
bot sends, decoded, in arrival order.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time

import numpy as np

from voicebot.g711 import ulaw_decode, ulaw_encode

FRAME = 160  # samples of 20 ms at 8 kHz
PT_PCMU = 0
PT_EVENT = 101
DTMF_EVENTS = {d: i for i, d in enumerate("0123456789*#ABCD")}


class RtpPeer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None  # latched from the bot's first packet
        self.received: list[np.ndarray] = []  # the bot's audio, one 20 ms frame per packet
        self.received_at: list[float] = []  # monotonic arrival time of each frame
        self.payload_types: set[int] = set()
        self._ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._clips: asyncio.Queue[np.ndarray] = asyncio.Queue()
        self._playing = asyncio.Event()
        self._played = asyncio.Event()
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._got_remote = asyncio.Event()

    # -- socket ---------------------------------------------------------------------------
    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> RtpPeer:
        loop = asyncio.get_running_loop()
        _t, peer = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        return peer

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        if self.remote is None:
            self.remote = addr
            self._got_remote.set()
            self._task = asyncio.get_running_loop().create_task(self._send_loop())
        cc = data[0] & 0x0F
        offset = 12 + 4 * cc
        if data[0] & 0x10:  # header extension
            (length,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * length
        pt = data[1] & 0x7F
        self.payload_types.add(pt)
        if pt == PT_PCMU:
            self.received.append(ulaw_decode(data[offset:]))
            self.received_at.append(time.monotonic())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.close()

    # -- what the caller does -------------------------------------------------------------
    async def wait_for_bot(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._got_remote.wait(), timeout)

    async def say(self, samples: np.ndarray) -> None:
        """Play an 8 kHz clip and wait until it has been sent."""
        self._played.clear()
        await self._clips.put(samples)
        await self._played.wait()

    async def press(self, digit: str) -> None:
        await self._digits.put(digit)

    def bot_audio(self) -> np.ndarray:
        return np.concatenate(self.received) if self.received else np.zeros(0, np.int16)

    async def wait_for_bot_speech(self, timeout: float = 60.0) -> None:
        """Until the bot's audio is loud (it started speaking)."""
        deadline = time.monotonic() + timeout
        start = len(self.received)
        while time.monotonic() < deadline:
            if any(np.abs(f).max(initial=0) > 500 for f in self.received[start:]):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("the bot did not speak")

    async def wait_for_bot_quiet(
        self, quiet_s: float, after_speech: bool = True, timeout: float = 120.0
    ) -> None:
        """Until the bot has been silent for ``quiet_s`` (after it said something)."""
        deadline = time.monotonic() + timeout
        start = len(self.received)
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            frames = self.received[start:]
            loud = [i for i, f in enumerate(frames) if np.abs(f).max(initial=0) > 500]
            if after_speech and not loud:
                continue
            last_loud = loud[-1] if loud else -1
            if (len(frames) - 1 - last_loud) * 0.02 >= quiet_s:
                return
        raise TimeoutError(f"the bot did not fall silent for {quiet_s} s")

    # -- RTP out ----------------------------------------------------------------------------
    def _packet(self, pt: int, payload: bytes, marker: bool = False, ts: int | None = None):
        self._seq = (self._seq + 1) & 0xFFFF
        header = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if marker else 0) | pt,
            self._seq,
            (self._ts if ts is None else ts) & 0xFFFFFFFF,
            self._ssrc,
        )
        self.transport.sendto(header + payload, self.remote)

    async def _send_loop(self) -> None:
        """One packet every 20 ms on an absolute schedule (no drift)."""
        next_t = time.monotonic()
        current = np.zeros(0, np.int16)
        pos = 0
        dtmf: list[tuple[bytes, bool]] = []  # pending event packets (payload, marker)
        dtmf_ts = 0
        while True:
            if not dtmf and not self._digits.empty():
                digit = self._digits.get_nowait()
                event = DTMF_EVENTS[digit]
                dtmf_ts = self._ts
                steps = [(160 * k, False) for k in range(1, 8)]  # 140 ms of key press
                dtmf = [(struct.pack("!BBH", event, 10, d), k == 0) for k, (d, _) in
                        enumerate(steps)]  # fmt: skip
                end = struct.pack("!BBH", event, 0x80 | 10, 160 * 8)
                dtmf += [(end, False)] * 3
            if dtmf:
                payload, marker = dtmf.pop(0)
                self._packet(PT_EVENT, payload, marker, ts=dtmf_ts)
            else:
                if pos >= len(current) and not self._clips.empty():
                    current, pos = self._clips.get_nowait(), 0
                if pos < len(current):
                    chunk = current[pos : pos + FRAME]
                    pos += FRAME
                    if pos >= len(current):
                        self._played.set()
                    frame = np.zeros(FRAME, np.int16)
                    frame[: len(chunk)] = chunk
                else:
                    frame = np.zeros(FRAME, np.int16)
                self._packet(PT_PCMU, ulaw_encode(frame))
            self._ts += FRAME
            next_t += 0.02
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
