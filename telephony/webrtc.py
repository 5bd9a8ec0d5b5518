"""WebRTC calls over aiortc: the browser test phone and the staff console's audio leg.

A browser sends Opus (48 kHz stereo once decoded); the call loop wants 20 ms frames of
16 kHz mono int16 on the call clock. This module converts at the edge, in both
directions, and turns the browser's keypad (JSON on a data channel) into ``DtmfFrame``s,
so that the conversation core never learns that the caller is a web page.

Only the ICE servers from ``TelephonySettings.webrtc.ice_servers`` are used: aiortc
adds a public Google STUN server when given none, which a city hall network should not
be contacted about.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from telephony.config import TelephonySettings
from voicebot.frames import DTMF_DIGITS, AudioFrame, DtmfFrame
from voicebot.resample import StreamResampler
from voicebot.transport import TransferError

if TYPE_CHECKING:
    from aiortc import RTCDataChannel

    from voicebot.dialogue import Handover

log = logging.getLogger(__name__)

FRAME_MS = 20
WEBRTC_RATE = 16000  # what the call loop gets and gives; VAD and Whisper work at 16 kHz
CONTROL_CHANNEL = "control"  # data channel label: keypad in, hangup notice out
# No frame from the peer for this long (lost packets, a muted sender): the call clock
# goes on with silence, so the bot keeps talking and no-input timers still run.
GAP_FILL_MS = 100
# A peer whose media never starts (ICE cannot connect) has hung up, as far as the call knows.
CONNECT_TIMEOUT_S = 20.0
# A page that negotiated the control channel says "ready" once it listens to the call's
# events; without that word, the call starts anyway after this long.
READY_TIMEOUT_S = 3.0
# Bot audio queued beyond this is stale (a burst after a stall); the oldest is dropped.
MAX_OUTGOING_MS = 600


class SignallingError(ValueError):
    """The SDP offer could not be used; the message says why."""


def ice_server(url: str) -> RTCIceServer:
    """An ``RTCIceServer`` from a URL; TURN credentials go in as ``turn:user:pass@host``."""
    scheme, _, rest = url.partition(":")
    if scheme in ("turn", "turns") and "@" in rest:
        credentials, _, host = rest.rpartition("@")
        username, _, password = credentials.partition(":")
        return RTCIceServer(f"{scheme}:{host}", username=username, credential=password)
    if scheme not in ("stun", "stuns", "turn", "turns"):
        raise ValueError(f"ICE server URL must start with stun:, stuns:, turn: or turns:: {url!r}")
    return RTCIceServer(url)


def rtc_configuration(ice_servers: list[str]) -> RTCConfiguration:
    """The peer configuration, always with an explicit server list (possibly empty)."""
    return RTCConfiguration(iceServers=[ice_server(u) for u in ice_servers])


def browser_ice_servers(ice_servers: list[str]) -> list[dict[str, Any]]:
    """The same servers as the browser's ``RTCPeerConnection`` wants them."""
    out = []
    for url in ice_servers:
        server = ice_server(url)
        entry: dict[str, Any] = {"urls": server.urls}
        if server.username:
            entry["username"] = server.username
            entry["credential"] = server.credential
        out.append(entry)
    return out


def mono_int16(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame as mono int16, channels averaged (Opus decodes to stereo)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    fmt = frame.format.name
    if frame.format.is_planar:
        signal = data.astype(np.float64).mean(axis=0) if channels > 1 else data[0]
    else:
        flat = data.reshape(-1)
        if channels > 1:
            signal = flat.reshape(-1, channels).astype(np.float64).mean(axis=1)
        else:
            signal = flat
    if fmt.startswith("s16"):
        return np.rint(signal).astype(np.int16) if signal.dtype != np.int16 else signal
    if fmt.startswith("flt") or fmt.startswith("dbl"):
        return np.clip(np.rint(np.asarray(signal) * 32768.0), -32768, 32767).astype(np.int16)
    if fmt.startswith("s32"):
        return (np.asarray(signal) / 65536.0).astype(np.int16)
    raise ValueError(f"unsupported audio sample format from the peer: {fmt}")


class IncomingAudio:
    """Decoded peer audio → 20 ms mono frames at ``rate``, whatever rate the codec had."""

    def __init__(self, rate: int = WEBRTC_RATE):
        self.rate = rate
        self.frame_samples = rate * FRAME_MS // 1000
        self._resampler: StreamResampler | None = None
        self._pending = np.zeros(0, dtype=np.int16)

    def convert(self, frame: av.AudioFrame) -> list[np.ndarray]:
        samples = mono_int16(frame)
        if self._resampler is None or self._resampler.from_rate != frame.sample_rate:
            self._resampler = StreamResampler(frame.sample_rate, self.rate)
        samples = self._resampler.process(samples)
        self._pending = np.concatenate([self._pending, samples])
        n = self.frame_samples
        chunks = []
        while len(self._pending) >= n:
            chunks.append(self._pending[:n].copy())
            self._pending = self._pending[n:]
        return chunks


class OutgoingAudioTrack(MediaStreamTrack):
    """Audio to the peer: queued 20 ms frames, paced in real time, silence when empty."""

    kind = "audio"

    def __init__(self, rate: int = WEBRTC_RATE, max_queue_ms: int = MAX_OUTGOING_MS):
        super().__init__()
        self.rate = rate
        self.frame_samples = rate * FRAME_MS // 1000
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._pending = np.zeros(0, dtype=np.int16)
        self._max_frames = max(1, max_queue_ms // FRAME_MS)
        self._start: float | None = None
        self._sent = 0  # samples handed to the encoder
        self.dropped_frames = 0
        self.played_frames = 0  # frames of queued audio (not fill silence) sent

    def push(self, samples: np.ndarray) -> None:
        """Queue audio at ``rate``; it is cut into 20 ms frames."""
        self._pending = np.concatenate([self._pending, np.asarray(samples, dtype=np.int16)])
        n = self.frame_samples
        while len(self._pending) >= n:
            self._queue.append(self._pending[:n].copy())
            self._pending = self._pending[n:]
        while len(self._queue) > self._max_frames:
            self._queue.popleft()
            self.dropped_frames += 1

    def clear(self) -> None:
        self._queue.clear()
        self._pending = np.zeros(0, dtype=np.int16)

    @property
    def queued_ms(self) -> float:
        return len(self._queue) * FRAME_MS

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            due = self._start + self._sent / self.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        if self._queue:
            samples = self._queue.popleft()
            self.played_frames += 1
        else:
            samples = np.zeros(self.frame_samples, dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, self.rate)
        self._sent += len(samples)
        return frame


class WebRtcTransport:
    """One call (or the staff leg of one) over an ``RTCPeerConnection`` to a browser.

    Create it with ``await WebRtcTransport.answer(...)``, which applies the peer's SDP offer
    and returns the transport with the SDP answer to send back.
    """

    name = "webrtc"

    def __init__(
        self,
        pc: RTCPeerConnection,
        *,
        call_id: str,
        settings: TelephonySettings | None = None,
        staff_console: Any | None = None,
        sample_rate: int = WEBRTC_RATE,
    ):
        self.pc = pc
        self.call_id = call_id
        self.settings = settings or TelephonySettings()
        self.staff_console = staff_console
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * FRAME_MS // 1000
        self.outgoing = OutgoingAudioTrack(sample_rate)
        self._incoming = IncomingAudio(sample_rate)
        self._queue: asyncio.Queue[AudioFrame | DtmfFrame | None] = asyncio.Queue()
        self._fill: collections.deque[AudioFrame] = collections.deque()
        self._samples_in = 0  # samples delivered by receive(): the frames' clock
        self._media_started = asyncio.Event()
        self._ready = asyncio.Event()
        self._ended = False
        self._closing: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._channel: RTCDataChannel | None = None
        self.created = time.monotonic()
        self.end_reason: str | None = None
        self._on_end: list[Any] = []
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connection_state)

    # -- set-up --------------------------------------------------------------------------
    @classmethod
    async def answer(
        cls,
        offer_sdp: str,
        offer_type: str = "offer",
        *,
        call_id: str,
        settings: TelephonySettings | None = None,
        staff_console: Any | None = None,
        sample_rate: int = WEBRTC_RATE,
    ) -> tuple[WebRtcTransport, RTCSessionDescription]:
        """Accept a peer's offer; returns the transport and the answer for the peer.

        A bad offer raises ``SignallingError`` and leaves nothing behind.
        """
        settings = settings or TelephonySettings()
        if offer_type != "offer":
            raise SignallingError(f"expected an SDP offer, got type {offer_type!r}")
        if not offer_sdp.strip().startswith("v=0"):
            raise SignallingError("the SDP offer does not start with 'v=0'")
        if "m=audio" not in offer_sdp:
            raise SignallingError("the SDP offer has no audio section (m=audio)")
        pc = RTCPeerConnection(rtc_configuration(settings.webrtc.ice_servers))
        transport = cls(
            pc,
            call_id=call_id,
            settings=settings,
            staff_console=staff_console,
            sample_rate=sample_rate,
        )
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            pc.addTrack(transport.outgoing)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await pc.close()
            raise SignallingError(f"the SDP offer could not be used: {exc}") from exc
        if "m=application" not in offer_sdp:
            transport._ready.set()  # no control channel: nobody will say "ready"
        transport._spawn(transport._watch_connect(), "watch-connect")
        return transport, pc.localDescription

    def on_end(self, callback: Any) -> None:
        """Call ``callback(transport)`` once when the connection is over (either side)."""
        self._on_end.append(callback)

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def connected(self) -> bool:
        return self._media_started.is_set() and not self._ended

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"webrtc-{self.call_id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_connect(self) -> None:
        try:
            await asyncio.wait_for(self._media_started.wait(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            log.warning("webrtc %s: no media within %.0f s", self.call_id, CONNECT_TIMEOUT_S)
            await self._finish("connect_timeout")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._pump(track), "pump")

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != CONTROL_CHANNEL:
            log.info("webrtc %s: ignoring data channel %r", self.call_id, channel.label)
            return
        self._channel = channel
        channel.on("message", self._on_control_message)
        channel.on("close", lambda: self._spawn(self._finish("control_closed"), "dc-close"))

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        log.debug("webrtc %s: connection %s", self.call_id, state)
        if state in ("failed", "closed"):
            self._spawn(self._finish(f"connection_{state}"), "state")

    # -- caller to bot -------------------------------------------------------------------
    async def _pump(self, track: MediaStreamTrack) -> None:
        """Decoded peer frames → 20 ms frames in the receive queue."""
        ready_deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while not self._ended:
                frame = await track.recv()
                if not self._ready.is_set():
                    if time.monotonic() < ready_deadline:
                        continue  # the page does not listen yet; this audio is nobody's
                    log.info("webrtc %s: no 'ready' from the page; starting", self.call_id)
                    self._ready.set()
                self._media_started.set()
                for chunk in self._incoming.convert(frame):
                    self._queue.put_nowait(AudioFrame.from_samples(chunk, self.sample_rate))
        except MediaStreamError:
            await self._finish("remote_track_ended")

    def _on_control_message(self, message: str | bytes) -> None:
        try:
            data = json.loads(message)
            kind = data["type"]
        except (ValueError, TypeError, KeyError):
            self._reply_error(f"not a JSON object with a 'type': {message!r:.60}")
            return
        if kind == "ready":
            self._ready.set()
        elif kind == "dtmf":
            digit = str(data.get("digit", ""))
            if digit not in DTMF_DIGITS or len(digit) != 1:
                self._reply_error(f"not a keypad digit: {digit!r:.10}")
                return
            self._queue.put_nowait(DtmfFrame(digit))
        elif kind == "hangup":
            self._spawn(self._finish("remote_hangup"), "remote-hangup")
        else:
            self._reply_error(f"unknown message type: {kind!r:.30}")

    def _reply_error(self, message: str) -> None:
        log.warning("webrtc %s: bad control message: %s", self.call_id, message)
        self._send_control({"type": "error", "message": message})

    def _send_control(self, data: dict[str, Any]) -> None:
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            with contextlib.suppress(Exception):
                channel.send(json.dumps(data, ensure_ascii=False))

    def _stamp(self, samples: np.ndarray) -> AudioFrame:
        frame = AudioFrame.from_samples(
            samples, self.sample_rate, self._samples_in * 1000.0 / self.sample_rate
        )
        self._samples_in += len(samples)
        return frame

    async def receive(self) -> AudioFrame | DtmfFrame | None:
        """The next 20 ms caller frame on the call clock, a key press, or None: hung up."""
        if self._ended:
            return None  # audio still queued after a hangup is of use to nobody
        if self._fill:
            return self._fill.popleft()
        if not self._media_started.is_set():
            item = await self._queue.get()  # the connect watchdog ends the wait if need be
        else:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # arrives as the frame does, and a cancelled reader (the staff bridge ending)
                # would then keep reading.
                async with asyncio.timeout(GAP_FILL_MS / 1000):
                    item = await self._queue.get()
            except TimeoutError:
                if self._ended:
                    return None
                for _ in range(GAP_FILL_MS // FRAME_MS):
                    self._fill.append(self._stamp(np.zeros(self.frame_samples, np.int16)))
                return self._fill.popleft()
        if item is None or self._ended:
            return None
        if isinstance(item, AudioFrame):
            return self._stamp(item.samples)
        return item

    # -- bot to caller -------------------------------------------------------------------
    async def send(self, frame: AudioFrame) -> None:
        """Queue one frame of audio for the peer (paced out in real time by the track)."""
        if self._ended:
            return
        if frame.sample_rate != self.sample_rate:
            raise ValueError(
                f"frame is {frame.sample_rate} Hz but this transport sends {self.sample_rate} Hz"
            )
        self.outgoing.push(frame.samples)

    # -- transfer and hangup -------------------------------------------------------------
    async def transfer(self, handover: Handover | None) -> str | None:
        """Try the configured targets in order; only the browser staff console works here."""
        for target in self.settings.transfer.targets:
            if target == "console":
                if self.staff_console is None:
                    log.warning("webrtc %s: no staff console running; skipping", self.call_id)
                    continue
                await self.staff_console.offer(
                    self, handover, self.call_id, self.settings.transfer.ring_timeout_s
                )
                return target
            if target.startswith("sip:"):
                log.info("webrtc %s: no REFER for browser calls; skipping %s", self.call_id, target)
                continue
            log.warning("webrtc %s: unknown transfer target %r; skipping", self.call_id, target)
        raise TransferError("no transfer target can take a WebRTC call")

    async def hangup(self) -> None:
        """End the call from our side: tell the page, close the connection."""
        self._send_control({"type": "hangup"})
        await self._finish("local_hangup")

    async def _finish(self, reason: str) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(reason))
        await asyncio.shield(self._closing)

    async def _close(self, reason: str) -> None:
        self._ended = True
        self.end_reason = reason
        log.info("webrtc %s: ended (%s)", self.call_id, reason)
        self._queue.put_nowait(None)
        self._media_started.set()  # wake a receive() waiting for the first frame
        self.outgoing.stop()
        if reason == "local_hangup":
            await asyncio.sleep(0.05)  # let the hangup notice leave before SCTP closes
        with contextlib.suppress(Exception):
            await self.pc.close()
        for callback in self._on_end:
            try:
                callback(self)
            except Exception:
                log.exception("webrtc %s: end callback failed", self.call_id)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current and not task.done() and "pump" in task.get_name():
                task.cancel()
