"""The WebRTC transport against a real aiortc peer on this host (no browser, no bot).

Audio in (a tone from the peer arrives as 16 kHz mono 20 ms frames on the call clock),
audio out (frames sent by the bot are heard by the peer), keypad over the data channel,
bad control messages, hangup from either side, transfer targets, bad offers.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools

import av
import numpy as np
import pytest
from webrtc_client import BrowserLikePeer, dominant_frequency, rms, wait_for

from telephony.config import TelephonySettings
from telephony.webrtc import (
    IncomingAudio,
    SignallingError,
    WebRtcTransport,
    browser_ice_servers,
    ice_server,
    mono_int16,
    rtc_configuration,
)
from voicebot.frames import AudioFrame, DtmfFrame
from voicebot.transport import TransferError


async def connect(peer: BrowserLikePeer, **kw) -> WebRtcTransport:
    holder: list[WebRtcTransport] = []

    async def answer(sdp: str, kind: str) -> tuple[str, str]:
        transport, desc = await WebRtcTransport.answer(sdp, kind, call_id="t1", **kw)
        holder.append(transport)
        return desc.sdp, desc.type

    await peer.call(answer)
    return holder[0]


async def audio_frames(transport: WebRtcTransport, n: int) -> list[AudioFrame]:
    frames = []
    while len(frames) < n:
        frame = await asyncio.wait_for(transport.receive(), 10)
        assert frame is not None
        if isinstance(frame, AudioFrame):
            frames.append(frame)
    return frames


@pytest.mark.asyncio
async def test_audio_both_ways_keypad_and_hangup():
    peer = BrowserLikePeer(freq=700.0)
    transport = await connect(peer)
    await asyncio.wait_for(peer.channel_open.wait(), 10)
    peer.send({"type": "ready"})

    # Caller → bot: 20 ms, 16 kHz, mono, on a contiguous call clock, carrying the tone.
    frames = await audio_frames(transport, 60)
    assert {f.sample_rate for f in frames} == {16000}
    assert {f.num_samples for f in frames} == {320}
    stamps = [f.timestamp_ms for f in frames]
    assert stamps == pytest.approx([stamps[0] + 20.0 * i for i in range(len(frames))])
    audio = np.concatenate([f.samples for f in frames[20:]])  # past Opus start-up
    assert dominant_frequency(audio, 16000) == pytest.approx(700, abs=20)
    assert rms(audio) > 1000

    # Bot → caller: one second of a 1100 Hz tone, fed one frame per received frame as the
    # call loop does.
    t = np.arange(16000) / 16000
    tone = np.rint(6000 * np.sin(2 * np.pi * 1100 * t)).astype(np.int16)
    before = len(peer.heard)
    for i in range(50):
        await transport.receive()
        await transport.send(AudioFrame.from_samples(tone[i * 320 : (i + 1) * 320], 16000))
    await wait_for(lambda: len(peer.heard) - before > 60)
    heard = np.concatenate(peer.heard[before:])
    loud = heard[np.abs(heard) > 0]
    assert rms(heard) > 1000
    assert dominant_frequency(loud, 48000) == pytest.approx(1100, abs=25)

    # Keypad: a digit becomes a DtmfFrame in order with the audio.
    peer.send({"type": "dtmf", "digit": "5"})
    peer.send({"type": "dtmf", "digit": "#"})
    digits = []
    while len(digits) < 2:
        frame = await asyncio.wait_for(transport.receive(), 10)
        if isinstance(frame, DtmfFrame):
            digits.append(frame.digit)
    assert digits == ["5", "#"]

    # Bad input gets a clear error back on the channel, and the call goes on.
    peer.send({"type": "dtmf", "digit": "x"})
    peer.channel.send("not json")
    await wait_for(lambda: len(peer.messages) >= 2)
    assert [m["type"] for m in peer.messages] == ["error", "error"]
    assert "keypad digit" in peer.messages[0]["message"]
    assert isinstance(await transport.receive(), AudioFrame)

    # The bot hangs up: the page is told, receive() reports the end from now on.
    await transport.hangup()
    await wait_for(lambda: any(m["type"] == "hangup" for m in peer.messages))
    while (frame := await transport.receive()) is not None:
        pass
    assert await transport.receive() is None
    assert transport.end_reason == "local_hangup"
    await peer.close()


@pytest.mark.asyncio
async def test_peer_hangup_ends_receive():
    peer = BrowserLikePeer(freq=500.0, control=False)  # no data channel: starts at once
    transport = await connect(peer)
    await audio_frames(transport, 5)
    await peer.close()
    frame = await asyncio.wait_for(transport.receive(), 15)
    while frame is not None:
        frame = await asyncio.wait_for(transport.receive(), 15)
    assert transport.ended


@pytest.mark.asyncio
async def test_page_hangup_message_ends_the_call():
    peer = BrowserLikePeer(freq=500.0)
    transport = await connect(peer)
    await asyncio.wait_for(peer.channel_open.wait(), 10)
    peer.send({"type": "ready"})
    await audio_frames(transport, 3)
    peer.send({"type": "hangup"})
    while (await asyncio.wait_for(transport.receive(), 10)) is not None:
        pass
    assert transport.end_reason == "remote_hangup"
    await peer.close()


@pytest.mark.asyncio
async def test_silence_fills_gaps_so_the_call_clock_runs():
    """A peer whose audio stops (but stays connected) still yields frames: no frozen bot."""
    peer = BrowserLikePeer(freq=500.0, control=False)
    transport = await connect(peer)
    await audio_frames(transport, 5)
    peer.mic.stop()  # the microphone goes away; the connection stays up
    frames = await audio_frames(transport, 40)
    silent = [f for f in frames if not f.samples.any()]
    assert len(silent) >= 20
    stamps = [f.timestamp_ms for f in frames]
    assert all(b - a == pytest.approx(20.0) for a, b in itertools.pairwise(stamps))
    await transport.hangup()
    await peer.close()


@pytest.mark.asyncio
async def test_transfer_targets_without_console():
    peer = BrowserLikePeer(control=False)
    settings = TelephonySettings()
    settings.transfer.targets = ["sip:staff@127.0.0.1", "console"]
    transport = await connect(peer, settings=settings)  # no staff console running
    with pytest.raises(TransferError):
        await transport.transfer(None)
    await transport.hangup()
    await peer.close()


@pytest.mark.asyncio
async def test_bad_offers_are_refused_clearly():
    with pytest.raises(SignallingError, match="v=0"):
        await WebRtcTransport.answer("hello", "offer", call_id="x")
    with pytest.raises(SignallingError, match="offer"):
        await WebRtcTransport.answer("v=0\r\n", "answer", call_id="x")
    with pytest.raises(SignallingError, match="audio"):
        await WebRtcTransport.answer("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", "offer", call_id="x")
    broken = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=garbage\r\n"
    with pytest.raises(SignallingError, match="could not be used"):
        await WebRtcTransport.answer(broken, "offer", call_id="x")


def test_ice_servers_are_explicit():
    assert rtc_configuration([]).iceServers == []  # never aiortc's default Google STUN
    turn = ice_server("turn:alice:s3cret@turn.example.org:3478")
    assert (turn.urls, turn.username, turn.credential) == (
        "turn:turn.example.org:3478",
        "alice",
        "s3cret",
    )
    assert browser_ice_servers(["stun:stun.example.org"]) == [{"urls": "stun:stun.example.org"}]
    with pytest.raises(ValueError, match="stun"):
        ice_server("http://example.org")


def stereo_frame(left: np.ndarray, right: np.ndarray, fmt: str) -> av.AudioFrame:
    """A 48 kHz stereo frame as aiortc's Opus decoder gives it (s16 packed) or as fltp."""
    if fmt == "s16":
        data = np.stack([left, right], axis=1).reshape(1, -1).astype(np.int16)
    else:
        data = np.stack([left, right]).astype(np.float32) / 32768.0
    frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
    frame.sample_rate = 48000
    frame.time_base = fractions.Fraction(1, 48000)
    return frame


@pytest.mark.parametrize("fmt", ["s16", "fltp"])
def test_opus_stereo_48k_becomes_mono_16k(fmt):
    """Channels are averaged (not interleaved into a double-length signal), then resampled."""
    t = np.arange(960 * 50) / 48000
    left = np.rint(8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    right = np.zeros_like(left)
    mono = mono_int16(stereo_frame(left[:960], right[:960], fmt))
    assert mono.dtype == np.int16 and len(mono) == 960
    assert np.abs(mono.astype(int) - left[:960] // 2).max() <= 1
    incoming = IncomingAudio(16000)
    chunks = []
    for i in range(50):
        sl = slice(i * 960, (i + 1) * 960)
        chunks += incoming.convert(stereo_frame(left[sl], right[sl], fmt))
    assert {len(c) for c in chunks} == {320}
    assert len(chunks) >= 48  # one second in, about one second out (resampler delay aside)
    audio = np.concatenate(chunks)[1600:]
    assert dominant_frequency(audio, 16000) == pytest.approx(440, abs=10)
    assert rms(audio) == pytest.approx(8000 / 2 / np.sqrt(2), rel=0.1)
