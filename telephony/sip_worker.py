"""A SIP worker process: one pjsua instance that takes up to four calls for the bot.

Why a process: the PyPI pjsua2 wheel is compiled with PJSUA_MAX_CALLS = 4 (a fifth
``makeCall`` fails, a fifth INVITE gets 486 from pjsua itself, whatever
``uaConfig.maxCalls`` says), and pjsua is a single instance per process. So the bot runs
as many of these workers as ``[sip] max_calls`` needs, behind the dispatcher on the public
SIP port (telephony/sip_dispatcher.py), and keeps the calls themselves (``SipCallTransport``,
the bot) in its own process. A worker listens on a private loopback port, takes INVITEs
only from the dispatcher, and relays each call's 20 ms frames, keys, transfer progress and
end to the bot over one Unix socket (telephony/sip_wire.py); media (RTP) goes straight
between the caller and the worker, on ports from the worker's share of the configured
range, and each call's sockets take packets from the address in the caller's SDP only
(telephony/rtp_peer_lock.py).

Threads: pjsua is driven from the main thread (``threadCnt = 0``, ``mainThreadOnly``,
``libHandleEvents``), which alone touches pjsua2 objects; a reader thread takes the bot's
messages (audio into per-call buffers, commands into a queue for the main thread); a
writer thread sends this worker's messages, so that pjmedia's clock thread never blocks
on the socket. SIGINT and SIGTERM are ignored: the bot drains its calls politely first
and then sends SHUTDOWN; if the bot dies, the socket's end of file stops the worker.

    python -m telephony.sip_worker FD CONFIG_JSON
"""

from __future__ import annotations

import collections
import gc
import json
import logging
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pjsua2 as pj

from telephony.pjsua_call import (
    FRAME_BYTES,
    SAMPLE_RATE,
    PjAccount,
    PjCall,
    PjLogWriter,
    PortPool,
    calls_held,
)
from telephony.sip_wire import PJSUA_MAX_CALLS, Decoder, Kind, decode_json, encode

log = logging.getLogger("telephony.sip_worker")

POLL_MS = 10  # libHandleEvents timeout: the longest a command waits for the pjsua thread
# A hangup asked for before the caller's ACK waits for it (pjsua may otherwise lose the
# BYE of a call answered a moment ago), at most this long.
ACK_WAIT_S = 5.0
SHUTDOWN_WAIT_S = 5.0
MAX_QUEUED_FRAMES = 3000  # 60 s of bot audio; the bot sends at the caller's pace
# Bot audio starts playing once this many frames are queued: 60 ms of slack absorbs short
# stalls of the bot's event loop without cutting gaps into its speech.
PREBUFFER_FRAMES = 3
# Without a block from the bot (telephony/sip_endpoint.py gives each worker its share of
# [sip] rtp_port_min..rtp_port_max), a worker takes its RTP ports from here.
RTP_PORT_BASE = 10000
RTP_PORTS_PER_WORKER = 100
# pjmedia's jitter buffer holds 500 ms by default and drops the rest of a longer burst
# (measured: a caller's RTP delayed by 0.8 s lost 16 of 40 frames). A lost syllable costs
# the bot a misrecognised question; holding up to 2 s costs delay only while it happens.
JITTER_BUFFER_MAX_MS = 2000
# A call whose caller has sent no RTP for this long is over (the caller vanished without
# a BYE); checked this often. The bot's settings may give another timeout.
MEDIA_TIMEOUT_S = 60.0
MEDIA_CHECK_S = 1.0


class Outbox:
    """Messages to the bot, written by one thread (callers never block on the socket)."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sip-worker-out", daemon=True)
        self._thread.start()

    def put(self, message: bytes) -> None:
        self._queue.put(message)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while first is not None:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
                if item is None:
                    break
            done = batch[-1] is None
            data = b"".join(m for m in batch if m is not None)
            try:
                if data:
                    self._sock.sendall(data)
            except OSError:
                return  # the bot is gone; the reader sees end of file and stops us
            if done:
                return

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=SHUTDOWN_WAIT_S)


class LegAudio:
    """One call's side of the worker: implements ``CallLegEvents`` for its ``PjCall``.

    The bot's frames wait in a deque that pjmedia's clock thread pops every 20 ms
    (silence when it is empty); the caller's frames and the call's events go to the bot.
    """

    def __init__(self, leg: int, sip_call_id: str, outbox: Outbox):
        self.leg = leg
        self.sip_call_id = sip_call_id
        self._outbox = outbox
        self._frames: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._buffering = True  # waiting for PREBUFFER_FRAMES before playing
        self._end: dict[str, Any] = {"sip_call_id": sip_call_id}  # what disconnected() said
        self._flushing = False  # a DRAIN is pending: play what is left without waiting

    # -- from the bot (reader thread) ---------------------------------------------------------
    def play(self, pcm: bytes) -> None:
        if len(pcm) != FRAME_BYTES:
            pcm = pcm[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
        with self._lock:
            if len(self._frames) >= MAX_QUEUED_FRAMES:
                log.warning("leg %d: bot audio backlog; dropping a frame", self.leg)
                return
            self._frames.append(pcm)

    def drain(self) -> None:
        with self._lock:
            self._flushing = True
            if not self._frames:
                self._drained()

    def _drained(self) -> None:  # with the lock held
        self._flushing = False
        self._buffering = True
        self._outbox.put(encode(Kind.DRAINED, self.leg))

    # -- CallLegEvents (pjsua and media threads) ----------------------------------------------
    def next_pcm(self) -> bytes | None:
        with self._lock:
            if self._buffering and not self._flushing and len(self._frames) < PREBUFFER_FRAMES:
                return None
            self._buffering = False
            if not self._frames:
                self._buffering = True  # an underrun: build the slack up again
                if self._flushing:
                    self._drained()
                return None
            pcm = self._frames.popleft()
            if self._flushing and not self._frames:
                self._drained()
            return pcm

    def pcm_received(self, pcm: bytes) -> None:
        self._outbox.put(encode(Kind.PCM, self.leg, pcm))

    def dtmf_received(self, digit: str) -> None:
        self._outbox.put(encode(Kind.DTMF, self.leg, {"digit": digit}))

    def transfer_status(self, code: int, reason: str, final: bool) -> None:
        payload = {"code": code, "reason": reason, "final": final}
        self._outbox.put(encode(Kind.TRANSFER_STATUS, self.leg, payload))

    def disconnected(self, code: int, reason: str) -> None:
        self._end = {"code": code, "reason": reason, "sip_call_id": self.sip_call_id}
        payload = {**self._end, "released": False}
        self._outbox.put(encode(Kind.DISCONNECTED, self.leg, payload))

    def released(self) -> None:
        """DISCONNECTED again, once pjsua has freed the call's slot: only then may the
        dispatcher send this worker another call in its place."""
        payload = {**self._end, "released": True}
        self._outbox.put(encode(Kind.DISCONNECTED, self.leg, payload))


class SipWorker:
    """pjsua on this process's main thread, serving the bot over ``sock``."""

    def __init__(self, sock: socket.socket, config: dict[str, Any]):
        self.sock = sock
        self.config = config
        self.outbox = Outbox(sock)
        self._stop = threading.Event()
        self._commands: queue.SimpleQueue[tuple[Kind, int, dict[str, Any]]] = queue.SimpleQueue()
        self._audio: dict[int, LegAudio] = {}  # read by the reader thread
        # Owned by the main (pjsua) thread:
        self._ep: pj.Endpoint | None = None
        self._account: PjAccount | None = None
        self._log_writer: PjLogWriter | None = None
        self._legs: dict[int, PjCall] = {}
        # Audio ports outlive their calls (telephony/pjsua_call.py says why): two per call
        # slot, so that a port freed a moment ago need not be handed on at once.
        self._ports = PortPool(2 * self._max_calls)
        self._ended_legs: list[PjCall] = []
        self._next_leg = 1
        self._waiting_for_ack: list[tuple[float, Kind, int, dict[str, Any]]] = []
        self._media_seen: dict[int, tuple[int, float]] = {}  # leg: (RTP packets, since when)
        self._media_checked = 0.0

    # -- main thread ----------------------------------------------------------------------------
    def run(self) -> int:
        try:
            port = self._create_library()
        except Exception as exc:
            message = exc.info() if isinstance(exc, pj.Error) else str(exc)
            log.error("SIP worker failed to start: %s", message)
            self.outbox.put(encode(Kind.READY, 0, {"error": message}))
            self._destroy_library()
            self.outbox.close()
            return 1
        reader = threading.Thread(target=self._read, name="sip-worker-in", daemon=True)
        reader.start()
        self.outbox.put(encode(Kind.READY, 0, {"port": port, "max_calls": self._max_calls}))
        try:
            while not self._stop.is_set():
                self._ep.libHandleEvents(POLL_MS)
                self._run_commands()
                self._reap_legs()
                self._end_silent_calls()
        except Exception:
            log.exception("SIP worker: pjsua loop failed")
        finally:
            self._shutdown_calls()
            self._destroy_library()
            self.outbox.close()
        return 0

    @property
    def _max_calls(self) -> int:
        return max(1, min(int(self.config.get("max_calls", PJSUA_MAX_CALLS)), PJSUA_MAX_CALLS))

    def _create_library(self) -> int:
        cfg_in = self.config
        ep = pj.Endpoint()
        self._ep = ep
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = self._max_calls
        cfg.uaConfig.userAgent = "taxline-voicebot"
        self._log_writer = PjLogWriter()
        cfg.logConfig.writer = self._log_writer
        cfg.logConfig.level = int(cfg_in.get("pjsip_log_level", 1))
        cfg.logConfig.consoleLevel = int(cfg_in.get("pjsip_log_level", 1))
        cfg.logConfig.decor = 0
        media = cfg.medConfig
        media.clockRate = SAMPLE_RATE
        media.sndClockRate = SAMPLE_RATE
        media.channelCount = 1
        media.audioFramePtime = 20
        media.ptime = 20
        media.noVad = True
        media.ecTailLen = 0
        media.jbMax = JITTER_BUFFER_MAX_MS
        # Bridge slots: each call's stream, the pool's two audio ports per call, and room
        # for streams whose removal the clock has not applied yet.
        media.maxMediaPorts = 3 * PJSUA_MAX_CALLS + 8
        ep.libInit(cfg)

        tcfg = pj.TransportConfig()
        tcfg.boundAddress = cfg_in["sip_host"]  # loopback: only the dispatcher talks to us
        tcfg.port = 0
        udp = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        port = int(ep.transportGetInfo(udp).localName.rsplit(":", 1)[1])

        ep.audDevManager().setNullDev()
        self._set_codec_priorities(ep)
        ep.libStart()

        acfg = pj.AccountConfig()
        acfg.idUri = cfg_in["id_uri"]
        media = acfg.mediaConfig.transportConfig
        media.boundAddress = cfg_in["media_host"]
        index = int(cfg_in.get("index", 0))
        first = int(cfg_in.get("rtp_port", RTP_PORT_BASE + RTP_PORTS_PER_WORKER * index))
        count = int(cfg_in.get("rtp_ports", RTP_PORTS_PER_WORKER))
        # RTP on even ports, RTCP on the next; pjsua starts at a random even port of the
        # block (then takes the next free pair for each call), so that the ports in use
        # are not the same known ones after every start.
        media.port = first + first % 2
        media.portRange = max(2, count - 2 - first % 2)
        media.randomizePort = True
        if cfg_in.get("public_host"):
            acfg.mediaConfig.transportConfig.publicAddress = cfg_in["public_host"]
        self._account = PjAccount(self._on_incoming)
        self._account.create(acfg, True)
        return port

    def _set_codec_priorities(self, ep: pj.Endpoint) -> None:
        """Only the configured codecs, in their order (PCMU, PCMA by default)."""
        wanted = [c.upper() for c in self.config.get("codecs", ["PCMU", "PCMA"])]
        enabled = []
        for codec in ep.codecEnum2():
            name = codec.codecId.split("/")[0].upper()
            priority = 255 - wanted.index(name) if name in wanted else 0
            ep.codecSetPriority(codec.codecId, priority)
            if priority:
                enabled.append(codec.codecId)
        if not enabled:
            raise RuntimeError(f"none of the codecs {wanted} is available")

    def _on_incoming(self, prm: pj.OnIncomingCallParam) -> None:
        """An INVITE passed pjsua's checks (SDP, codecs): answer it for the bot."""
        source = prm.rdata.srcAddress
        key = self._next_leg
        self._next_leg += 1
        leg = PjCall(
            self._account, prm.callId, self._leg_ended, self._ports, self.config["media_host"]
        )
        self._legs[key] = leg
        answer = pj.CallOpParam()
        if source != self.config["dispatcher"]:
            # Only the dispatcher may reach this loopback port; it checked the caller.
            log.warning("INVITE from %s refused (not the dispatcher)", source)
            answer.statusCode = 403
            answer.reason = "Forbidden"
            leg.answer(answer)
            return
        info = leg.getInfo()
        audio = LegAudio(key, info.callIdString, self.outbox)
        self._audio[key] = audio
        leg.attach(audio)
        answer.statusCode = 200
        leg.answer(answer)
        payload = {"caller": info.remoteUri, "sip_call_id": info.callIdString}
        self.outbox.put(encode(Kind.INCOMING, key, payload))

    def _end_silent_calls(self) -> None:
        """Hang up established calls whose caller has sent no RTP for the media timeout:
        a caller that vanished without a BYE must not hold a call slot for ever. RTP from
        any other source never reaches pjmedia (the sockets are locked to the caller), so
        a stranger cannot keep such a call alive."""
        now = time.monotonic()
        if now - self._media_checked < MEDIA_CHECK_S:
            return
        self._media_checked = now
        timeout = float(self.config.get("media_timeout_s", MEDIA_TIMEOUT_S))
        for key, leg in list(self._legs.items()):
            if leg.ended or not leg.confirmed:
                continue
            try:
                packets = leg.rx_packets()
            except pj.Error:
                continue
            seen = self._media_seen.get(key)
            if seen is None or packets != seen[0]:
                self._media_seen[key] = (packets, now)
            elif now - seen[1] > timeout:
                log.warning("leg %d: no RTP from the caller for %.0f s; hanging up", key, timeout)
                self._media_seen[key] = (packets, now)  # once per timeout, not every check
                try:
                    leg.hangup(pj.CallOpParam(True))
                except pj.Error as exc:
                    log.warning("leg %d: hangup failed: %s", key, exc.info())

    def _leg_ended(self, leg: PjCall) -> None:
        # Not deleted inside its own callback: the next loop iteration reaps it.
        self._ended_legs.append(leg)

    def _reap_legs(self) -> None:
        """Drop the calls that have ended, each once pjsua has let it go, and say so
        (DISCONNECTED with released): pjsua reports a call's end before it frees the
        call's slot, and a call hung up before the caller's ACK keeps its slot until the
        ACK comes or Timer H runs out. The dispatcher counts this worker's slots by these
        reports, so that a slot it counts free is free in pjsua too (else: 486 Busy Here)."""
        if not self._ended_legs:
            return
        held = calls_held()
        ended, self._ended_legs = self._ended_legs, []
        while ended:  # popped: no loop variable keeps a call object alive afterwards
            leg = ended.pop()
            if not leg.let_go(held):
                self._ended_legs.append(leg)
                continue
            leg.report_released()
            for key, known in list(self._legs.items()):
                if known is leg:
                    del self._legs[key]
                    self._audio.pop(key, None)
                    self._media_seen.pop(key, None)
            leg.release()  # its port is kept for the next call, never destroyed here
            del leg

    def _run_commands(self) -> None:
        if self._waiting_for_ack:
            waiting, self._waiting_for_ack = self._waiting_for_ack, []
            for since, kind, key, args in waiting:
                self._run_command(kind, key, args, since)
        while True:
            try:
                kind, key, args = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind is Kind.SHUTDOWN:
                self._stop.set()
                continue
            self._run_command(kind, key, args)

    def _run_command(
        self, kind: Kind, key: int, args: dict[str, Any], since: float | None = None
    ) -> None:
        leg = self._legs.get(key)
        since = time.monotonic() if since is None else since
        if (
            leg is not None
            and not leg.ended
            and not leg.confirmed
            and time.monotonic() - since < ACK_WAIT_S
        ):
            self._waiting_for_ack.append((since, kind, key, args))
            return
        error = None
        try:
            self._command(kind, key, args)
        except pj.Error as exc:
            error = exc.info()
        except Exception as exc:
            error = str(exc) or type(exc).__name__
        self.outbox.put(encode(Kind.RESULT, key, {"id": args.get("id"), "error": error}))

    def _command(self, kind: Kind, key: int, args: dict[str, Any]) -> None:
        leg = self._legs.get(key)
        if kind is Kind.HANGUP:
            if leg is not None and not leg.ended:
                prm = pj.CallOpParam()
                prm.statusCode = 200
                leg.hangup(prm)
        elif kind is Kind.REFER:
            if leg is None or leg.ended:
                raise RuntimeError("the call has ended")
            leg.xfer(args["uri"], pj.CallOpParam(True))

    def _shutdown_calls(self) -> None:
        ep = self._ep
        if ep is None:
            return
        try:
            if self._legs:
                ep.hangupAllCalls()
                for _ in range(int(SHUTDOWN_WAIT_S * 1000 / POLL_MS)):
                    if not self._legs:
                        break
                    ep.libHandleEvents(POLL_MS)
                    self._reap_legs()
        except Exception:
            log.exception("SIP worker: error while hanging up calls")

    def _destroy_library(self) -> None:
        """Drop every pjsua2 object, then libDestroy, all on this thread (or it aborts).
        The audio ports are detached and the media clock stopped first, so that no clock
        callback runs on anything being torn down."""
        legs = [*self._legs.values(), *self._ended_legs]
        self._legs.clear()
        self._ended_legs.clear()
        self._audio.clear()
        while legs:  # no loop variable may keep a call alive past libDestroy (it aborts)
            legs.pop().release()
        self._ports.close(self._ep)
        if self._account is not None:
            try:
                self._account.shutdown()
            except Exception:
                log.exception("SIP worker: account shutdown failed")
        self._account = None
        gc.collect()
        if self._ep is not None:
            try:
                self._ep.libDestroy()
            except Exception:
                log.exception("SIP worker: libDestroy failed")
        self._ep = None
        self._log_writer = None
        gc.collect()

    # -- reader thread --------------------------------------------------------------------------
    def _read(self) -> None:
        decoder = Decoder()
        handlers: dict[Kind, Callable[[int, bytes], None]] = {
            Kind.AUDIO: self._on_audio,
            Kind.DRAIN: self._on_drain,
        }
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                for kind, leg, payload in decoder.feed(data):
                    handler = handlers.get(kind)
                    if handler is not None:
                        handler(leg, payload)
                    elif kind in (Kind.HANGUP, Kind.REFER, Kind.SHUTDOWN):
                        self._commands.put((kind, leg, decode_json(payload)))
                    else:
                        log.warning("unexpected message %s from the bot", kind.name)
        except OSError:
            pass
        except Exception:
            log.exception("SIP worker: bad message from the bot")
        # End of file (the bot has gone) or SHUTDOWN: stop after hanging up.
        self._commands.put((Kind.SHUTDOWN, 0, {}))

    def _on_audio(self, leg: int, pcm: bytes) -> None:
        audio = self._audio.get(leg)
        if audio is not None:
            audio.play(pcm)

    def _on_drain(self, leg: int, _payload: bytes) -> None:
        audio = self._audio.get(leg)
        if audio is not None:
            audio.drain()
        else:  # the call has ended: nothing left to play
            self.outbox.put(encode(Kind.DRAINED, leg))


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd, config = int(argv[1]), json.loads(argv[2])
    logging.basicConfig(
        level=int(config.get("log_level", logging.WARNING)),
        format=f"%(asctime)s sip-worker-{config.get('index', 0)} %(levelname)s "
        "%(name)s: %(message)s",
    )
    sock = socket.socket(fileno=fd)
    try:
        return SipWorker(sock, config).run()
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
