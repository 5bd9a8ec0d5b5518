"""A Python WebRTC peer (aiortc) standing in for a browser in the transport tests.

It really negotiates (SDP, ICE over the host's interfaces, DTLS, SRTP, SCTP) with the
transport under test; only the microphone and loudspeaker are numpy arrays.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections.abc import Awaitable, Callable

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from telephony.webrtc import mono_int16

RATE = 48000
FRAME = 960  # 20 ms at 48 kHz


class SignalTrack(MediaStreamTrack):
    """The peer's microphone: a tone (or silence), paced in real time."""

    kind = "audio"

    def __init__(self, freq: float | None = None, amplitude: float = 8000.0):
        super().__init__()
        self.freq = freq
        self.amplitude = amplitude
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self._start + self._n / RATE - time.monotonic()))
        t = (self._n + np.arange(FRAME)) / RATE
        if self.freq is None:
            samples = np.zeros(FRAME, dtype=np.int16)
        else:
            samples = np.rint(self.amplitude * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._n
        frame.time_base = fractions.Fraction(1, RATE)
        self._n += FRAME
        return frame


class BrowserLikePeer:
    """Offers audio (and the control data channel), records what it hears."""

    def __init__(self, freq: float | None = None, control: bool = True):
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = SignalTrack(freq)
        self.pc.addTrack(self.mic)
        self.heard: list[np.ndarray] = []  # 48 kHz mono chunks
        self.messages: list[dict] = []
        self.channel = self.pc.createDataChannel("control") if control else None
        self.channel_open = asyncio.Event()
        if self.channel is not None:
            self.channel.on("open", self.channel_open.set)
            self.channel.on("message", lambda m: self.messages.append(json.loads(m)))
        self._tasks: list[asyncio.Task] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._listen(track)))

    async def _listen(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.heard.append(mono_int16(frame))

    async def call(self, answer: Callable[[str, str], Awaitable[tuple[str, str]]]) -> None:
        """Make an offer, hand it to ``answer`` (the signalling), apply the answer."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp, kind = await answer(self.pc.localDescription.sdp, self.pc.localDescription.type)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, kind))

    def send(self, data: dict) -> None:
        assert self.channel is not None
        self.channel.send(json.dumps(data))

    def heard_audio(self) -> np.ndarray:
        return np.concatenate(self.heard) if self.heard else np.zeros(0, np.int16)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency in a stretch of audio (Hz)."""
    signal = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(signal))
    spectrum[:5] = 0  # ignore DC
    return float(np.argmax(spectrum) * rate / len(samples))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until ``predicate()`` holds; fail the test with a timeout otherwise."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the timeout")
        await asyncio.sleep(0.02)
