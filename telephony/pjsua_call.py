"""pjsua2 objects of one SIP call: the call, its audio port, the account that takes calls.

Everything here is called by pjsua2. ``PjCall`` and ``PjAccount`` callbacks run on the
endpoint's own pjsua thread (``mainThreadOnly``); ``FramePort`` callbacks run on the one
pjmedia clock thread shared by all calls, so they never block: received audio is handed
to asyncio with ``call_soon_threadsafe`` and the audio to play is popped from a deque.

These objects never leave the pjsua thread (a pjsua2 object destroyed on an unregistered
thread aborts the process); the asyncio side talks to them through ``CallLegEvents``.

A ``FramePort`` is never destroyed while pjmedia's clock runs: pjsua2's port destructor
only queues the port's removal from the conference bridge and frees it at once, while the
clock thread may be waiting for the GIL to call it (it then runs on a half-destroyed
Python object, and the process dies). So ports come from a ``PortPool``, pass from call to
call, and are let go only after the clock has stopped (``PortPool.close``).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import importlib
import logging
import time
from typing import ClassVar, Protocol

import pjsua2 as pj

from telephony.rtp_peer_lock import lock_stream

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 20 ms of 16-bit mono
SILENCE = bytes(FRAME_BYTES)
# A port given back at the end of a call is handed to the next call only after this long,
# so that the ended call's stream, whose removal from the bridge pjmedia applies on a later
# clock tick, can no longer send it a frame of the previous caller.
PORT_QUIET_S = 0.2


class CallLegEvents(Protocol):
    """What a call leg reports to its transport (thread-safe: called off the event loop)."""

    def pcm_received(self, pcm: bytes) -> None: ...
    def next_pcm(self) -> bytes | None: ...
    def dtmf_received(self, digit: str) -> None: ...
    def transfer_status(self, code: int, reason: str, final: bool) -> None: ...
    def disconnected(self, code: int, reason: str) -> None: ...
    def released(self) -> None: ...  # after disconnected(): pjsua has freed the call's slot


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


def _find_enum_calls():
    """pjsua's ``pjsua_enum_calls`` in the loaded pjsua2 library (the same instance: a
    second dlopen of a loaded library returns it), or None if it cannot be found."""
    try:
        library = ctypes.CDLL(importlib.import_module("pjsua2._pjsua2").__file__)
        enum_calls = library.pjsua_enum_calls
    except (ImportError, OSError, AttributeError):
        log.warning("pjsua_enum_calls not found; a call's end is judged by pjsua2 alone")
        return None
    enum_calls.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_uint)]
    enum_calls.restype = ctypes.c_int
    return enum_calls


_enum_calls = _find_enum_calls()
_MAX_CALL_IDS = 64  # more than any pjsua build holds (PJSUA_MAX_CALLS)


def calls_held() -> set[int] | None:
    """The ids of the calls that hold one of pjsua's call slots now (a call is counted by
    pjsua, and refused a new INVITE with 486, until its slot is freed), or None if pjsua's
    list cannot be read. pjsua thread only."""
    if _enum_calls is None:
        return None
    ids = (ctypes.c_int * _MAX_CALL_IDS)()
    count = ctypes.c_uint(_MAX_CALL_IDS)
    if _enum_calls(ids, ctypes.byref(count)) != 0:
        return None
    return set(ids[: count.value])


def _callback_failed(what: str) -> None:
    """Log a failed clock-thread callback; never raises (not even while the interpreter
    shuts down), since an exception escaping a SWIG director callback aborts the process."""
    with contextlib.suppress(BaseException):
        log.exception("SIP audio: could not %s a frame", what)


class FramePort(pj.AudioMediaPort):
    """Conference-bridge port that moves one call's 20 ms frames to and from Python.

    Its callbacks run on the clock thread, also when no call is attached (pjmedia sends
    an unconnected port empty frames) and in any order against the pjsua thread's
    attach/detach: they read the call's events once, tolerate their absence, and never
    raise.
    """

    def __init__(self, events: CallLegEvents | None = None):
        super().__init__()
        self._events = events  # one reference, swapped atomically under the GIL
        self._silence = pj.ByteVector(SILENCE)

    @property
    def events(self) -> CallLegEvents | None:
        return self._events

    def attach(self, events: CallLegEvents) -> None:
        """Hand this port's frames to ``events`` from now on (pjsua thread)."""
        self._events = events

    def detach(self) -> None:
        """Stop handing frames to the call (pjsua thread); the clock may still call the
        port, and then gets silence and drops what it receives."""
        self._events = None

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
            events = getattr(self, "_events", None)
            pcm = events.next_pcm() if events is not None else None
            silence = getattr(self, "_silence", None)
            frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
            if pcm is not None:
                frame.buf = pj.ByteVector(pcm)
            elif silence is not None:
                frame.buf = silence
            else:
                frame.buf = pj.ByteVector(SILENCE)
            frame.size = FRAME_BYTES
        except BaseException:  # anything escaping into pjmedia would abort the process
            _callback_failed("supply")

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        try:
            events = getattr(self, "_events", None)
            if events is not None and frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO and frame.size:
                events.pcm_received(read_byte_vector(frame.buf))
        except BaseException:
            _callback_failed("take")


class PortPool:
    """The worker's ``FramePort``s, kept for as long as pjmedia's clock runs.

    A call takes a port (a free one that has been quiet for PORT_QUIET_S, else a new one)
    and gives it back when it ends; at most ``limit`` ports are made, after which the
    longest-free port is taken even if it was freed a moment ago. Only ``close`` lets the
    ports go, and only once the clock has stopped. Used on the pjsua thread only.
    """

    def __init__(self, limit: int, quiet_s: float = PORT_QUIET_S):
        self.limit = max(1, limit)
        self.quiet_s = quiet_s
        self.ports: list[FramePort] = []
        self._free: collections.deque[tuple[float, FramePort]] = collections.deque()
        self._closed = False

    @property
    def free(self) -> int:
        return len(self._free)

    def take(self, events: CallLegEvents) -> FramePort:
        """A port attached to ``events``; pj.Error if the bridge has no room for a new one."""
        if self._closed:
            raise RuntimeError("the port pool is closed")
        now = time.monotonic()
        if self._free and (now - self._free[0][0] >= self.quiet_s or len(self.ports) >= self.limit):
            _freed, port = self._free.popleft()
        else:
            port = FramePort()
            port.create(f"bot{len(self.ports)}")
            self.ports.append(port)
        port.attach(events)
        return port

    def give_back(self, port: FramePort) -> None:
        """The call is over: the port stops serving it and waits for the next call."""
        port.detach()
        if not self._closed and all(p is not port for _t, p in self._free):
            self._free.append((time.monotonic(), port))

    def close(self, endpoint: pj.Endpoint | None) -> None:
        """Detach every port and stop pjmedia's clock (no audio device: the null device's
        clock thread is joined), so that no callback can reach a port again. The C++ ports
        are then disowned, not destroyed: pjsua2's destructor would queue a removal that
        the bridge applies after the memory is freed; libDestroy removes them from the
        bridge itself, and the process exits next."""
        self._closed = True
        for port in self.ports:
            port.detach()
        if endpoint is not None and self.ports:
            try:
                endpoint.audDevManager().setNoDev()
            except pj.Error as exc:
                log.warning("SIP audio: could not stop the media clock: %s", exc.info())
        for port in self.ports:
            port.thisown = False
        self._free.clear()


class PjCall(pj.Call):
    """One SIP dialog; forwards state, DTMF and transfer progress to its transport."""

    def __init__(
        self,
        account: pj.Account,
        call_id: int,
        on_disconnected,
        ports: PortPool,
        media_host: str | None = None,
    ):
        super().__init__(account, call_id)
        self._ports = ports  # where the call's audio port comes from, and goes back to
        try:  # told apart from a later call that pjsua gives the same id
            self.sip_call_id = self.getInfo().callIdString
        except pj.Error:
            self.sip_call_id = ""
        # The address the media sockets are bound to: when given, each audio stream takes
        # RTP only from the far end's SDP address (telephony/rtp_peer_lock.py).
        self.media_host = media_host
        self.events: CallLegEvents | None = None
        self.port: FramePort | None = None
        self.ended = False  # DISCONNECTED: over for SIP, though pjsua may still hold it
        self.confirmed = False  # the caller's ACK has arrived (the dialog is established)
        self._on_disconnected = on_disconnected

    def attach(self, events: CallLegEvents) -> None:
        self.events = events

    def release(self) -> None:
        """The call is over and this object is about to be dropped (pjsua thread): its
        audio port goes back to the pool. If pjsua has meanwhile given the call's id to a
        newer call (an INVITE handled in the same loop turn as this call's end), the C++
        object is disowned and never destroyed: pjsua2's destructor would unbind that
        newer call from its own object and hang it up."""
        port, self.port = self.port, None
        if port is not None:
            self._ports.give_back(port)
        self.events = None
        if self.ended and self.isActive():  # the id is a newer call's now
            self.thisown = False

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        log.debug("SIP call %s: %s", info.callIdString, info.stateText)
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
            # Over for the caller and the bot; pjsua frees the slot later (report_released).
            self.ended = True
            if self.events is not None:
                self.events.disconnected(info.lastStatusCode, info.lastReason)
            self._on_disconnected(self)

    def let_go(self, held: set[int] | None) -> bool:
        """pjsua no longer holds this ended call: its id is not among ``held`` (from
        ``calls_held()``) or belongs to a newer call. pjsua reports DISCONNECTED before it
        frees the call's slot, and a call hung up before the caller's ACK keeps its slot
        until the ACK comes or Timer H runs out."""
        if held is None:
            return not self.isActive()
        return self.getId() not in held or self._id_taken_by_another_call()

    def _id_taken_by_another_call(self) -> bool:
        try:  # the id holds a slot here, so pjsua has its information (no error logged)
            return self.getInfo().callIdString != self.sip_call_id
        except pj.Error:
            return True

    def report_released(self) -> None:
        """Tell the bot pjsua has let the call go (its slot may be counted free)."""
        if self.events is not None:
            self.events.released()

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
                self.port = self._ports.take(self.events)
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
