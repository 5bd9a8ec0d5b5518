"""pjsua2 objects of one SIP call: the call, its audio port, the account that takes calls.

Everything here is called by pjsua2. ``PjCall`` and ``PjAccount`` callbacks run on the
endpoint's own pjsua thread (``mainThreadOnly``); ``FramePort`` callbacks run on the one
pjmedia clock thread shared by all calls, so they never block: received audio is handed
to asyncio with ``call_soon_threadsafe`` and the audio to play is popped from a deque.

These objects never leave the pjsua thread (a pjsua2 object destroyed on an unregistered
thread aborts the process); the asyncio side talks to them through ``CallLegEvents``.
"""

from __future__ import annotations

import ctypes
import logging
from typing import ClassVar, Protocol

import pjsua2 as pj

from telephony.rtp_peer_lock import lock_stream

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 20 ms of 16-bit mono
SILENCE = bytes(FRAME_BYTES)


class CallLegEvents(Protocol):
    """What a call leg reports to its transport (thread-safe: called off the event loop)."""

    def pcm_received(self, pcm: bytes) -> None: ...
    def next_pcm(self) -> bytes | None: ...
    def dtmf_received(self, digit: str) -> None: ...
    def transfer_status(self, code: int, reason: str, final: bool) -> None: ...
    def disconnected(self, code: int, reason: str) -> None: ...


def _read_vector_slow(vector: pj.ByteVector) -> bytes:
    return bytes(tuple(vector))


def _read_vector_fast(vector: pj.ByteVector) -> bytes:
    # A std::vector<unsigned char> starts with its data pointer (libstdc++ and libc++);
    # reading it directly costs ~2 µs instead of ~150 µs of per-element SWIG calls.
    address = int(vector.this)
    data = ctypes.c_void_p.from_address(address).value
    return ctypes.string_at(data, vector.size()) if data else b""


def _pick_vector_reader():
    """The fast reader if it reads a known vector back exactly, else the portable one."""
    probe = bytes(range(256)) + bytes(range(64))
    try:
        if _read_vector_fast(pj.ByteVector(probe)) == probe:
            return _read_vector_fast
    except Exception:  # any surprise means: use the portable reader
        pass
    log.warning("pjsua2 ByteVector layout not recognised; using the slow frame copy")
    return _read_vector_slow


read_byte_vector = _pick_vector_reader()


class FramePort(pj.AudioMediaPort):
    """Conference-bridge port that moves one call's 20 ms frames to and from Python."""

    def __init__(self, events: CallLegEvents):
        super().__init__()
        self.events = events
        self._silence = pj.ByteVector(SILENCE)

    def create(self, name: str) -> None:
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.id = pj.PJMEDIA_FORMAT_L16
        fmt.clockRate = SAMPLE_RATE
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = FRAME_MS * 1000
        fmt.avgBps = fmt.maxBps = SAMPLE_RATE * 16
        self.createPort(name, fmt)

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        try:
            pcm = self.events.next_pcm()
            frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
            frame.buf = self._silence if pcm is None else pj.ByteVector(pcm)
            frame.size = FRAME_BYTES
        except Exception:  # an exception escaping into pjmedia would abort the process
            log.exception("SIP audio: could not supply a frame")

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        try:
            if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO and frame.size:
                self.events.pcm_received(read_byte_vector(frame.buf))
        except Exception:
            log.exception("SIP audio: could not take a frame")


class PjCall(pj.Call):
    """One SIP dialog; forwards state, DTMF and transfer progress to its transport."""

    def __init__(
        self,
        account: pj.Account,
        call_id: int,
        on_disconnected,
        media_host: str | None = None,
    ):
        super().__init__(account, call_id)
        # The address the media sockets are bound to: when given, each audio stream takes
        # RTP only from the far end's SDP address (telephony/rtp_peer_lock.py).
        self.media_host = media_host
        self.events: CallLegEvents | None = None
        self.port: FramePort | None = None
        self.ended = False
        self.confirmed = False  # the caller's ACK has arrived (the dialog is established)
        self._on_disconnected = on_disconnected

    def attach(self, events: CallLegEvents) -> None:
        self.events = events

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        log.debug("SIP call %s: %s", info.callIdString, info.stateText)
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
            self.ended = True
            if self.events is not None:
                self.events.disconnected(info.lastStatusCode, info.lastReason)
            self._on_disconnected(self)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        if self.events is None:
            return
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO or media.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            if self.media_host is not None:
                self._lock_media(index, self.media_host)
            audio = self.getAudioMedia(index)
            if self.port is None:
                self.port = FramePort(self.events)
                self.port.create(f"bot{info.id}")
            # Both directions; re-INVITEs may recreate the stream, so connect every time.
            audio.startTransmit(self.port)
            self.port.startTransmit(audio)

    def _lock_media(self, index: int, bound_host: str) -> bool:
        """Connect stream ``index``'s sockets to the addresses of the far end's SDP (again
        after a re-INVITE, which may change them)."""
        try:
            transport = self.getMedTransportInfo(index)
            stream = self.getStreamInfo(index)
            return lock_stream(
                bound_host,
                transport.localRtpName,
                transport.localRtcpName,
                stream.remoteRtpAddress,
                stream.remoteRtcpAddress,
            )
        except pj.Error as exc:
            log.warning("SIP call media %d: not locked to its peer: %s", index, exc.info())
            return False

    def rx_packets(self) -> int:
        """RTP packets received from the caller so far, over the call's audio streams."""
        total = 0
        info = self.getInfo()  # held: its .media is a view into it (SWIG)
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO or media.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            try:
                # Keep the StreamStat alive while reading it: SWIG's .rtcp is a view into
                # it, and reading through a temporary reads freed memory (always 0).
                stat = self.getStreamStat(index)
                total += int(stat.rtcp.rxStat.pkt)
            except pj.Error:  # the stream is being recreated (re-INVITE)
                continue
        return total

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        if self.events is not None and prm.digit:
            self.events.dtmf_received(prm.digit)

    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:
        """A REFER from the far end: refused. The bot never lets a caller or the PBX make
        it dial a target of their choosing (pjsua would place that call outside the bot)."""
        log.warning("SIP call %s: REFER from the far end refused", self.getInfo().callIdString)
        prm.statusCode = pj.PJSIP_SC_FORBIDDEN

    def onCallReplaceRequest(self, prm: pj.OnCallReplaceRequestParam) -> None:
        """An INVITE with Replaces for this call: refused (it would take the call over)."""
        log.warning("SIP call %s: INVITE with Replaces refused", self.getInfo().callIdString)
        prm.statusCode = pj.PJSIP_SC_FORBIDDEN
        prm.reason = "Forbidden"

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        if self.events is not None:
            self.events.transfer_status(prm.statusCode, prm.reason, prm.finalNotify)
        if prm.finalNotify:
            prm.cont = False


class PjAccount(pj.Account):
    """The bot's local account (no registrar); hands each incoming INVITE to a callback."""

    def __init__(self, on_incoming):
        super().__init__()
        self._on_incoming = on_incoming

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        try:
            self._on_incoming(prm)
        except Exception:
            log.exception("SIP: failed to handle an incoming call")

    def onIncomingSubscribe(self, prm: pj.OnIncomingSubscribeParam) -> None:
        """Nobody may subscribe to the bot's presence or dialogs."""
        prm.code = pj.PJSIP_SC_FORBIDDEN
        prm.reason = "Forbidden"


class PjLogWriter(pj.LogWriter):
    """Routes pjsip's own log lines into Python logging (logger ``pjsip``)."""

    _levels: ClassVar[dict[int, int]] = {
        0: logging.CRITICAL,
        1: logging.ERROR,
        2: logging.WARNING,
        3: logging.INFO,
    }

    def __init__(self) -> None:
        super().__init__()
        self._log = logging.getLogger("pjsip")

    def write(self, entry: pj.LogEntry) -> None:
        self._log.log(self._levels.get(entry.level, logging.DEBUG), "%s", entry.msg.rstrip())
