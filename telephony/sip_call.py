"""One SIP call as a ``CallTransport``: the bot's side of a call leg in a SIP worker.

pjsua runs in a worker process (telephony/sip_worker.py); everything it reports about
this call arrives on the event loop through the worker link, and everything the bot does
(audio, hang up, REFER) goes back through the ``WorkerLeg``. Caller frames and key presses
wait in an asyncio queue for ``receive()``; bot frames are cut into 20 ms and queued in
the worker, which plays one every 20 ms (silence when it has none).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from telephony.config import TransferSettings
from telephony.pjsua_call import FRAME_BYTES, FRAME_MS, SAMPLE_RATE
from voicebot.frames import AudioFrame, DtmfFrame
from voicebot.transport import TransferError

if TYPE_CHECKING:
    from telephony.sip_worker_link import WorkerLeg
    from voicebot.dialogue import Handover

log = logging.getLogger(__name__)

DRAIN_GRACE_S = 2.0  # extra time for the last queued bot audio to play before BYE/REFER
# The caller's audio waiting for receive(): 60 s of it at most. Beyond that nobody is
# reading (a stuck handler), and a long call must not pile up its audio in memory.
MAX_INBOUND_FRAMES = 3000
# No caller frame for this long once media flows: the call clock goes on with silence
# (pjsua's conference bridge normally delivers a frame every 20 ms, RTP or not).
GAP_FILL_MS = 200
SILENT_FRAME = bytes(FRAME_BYTES)
# After a gap was filled, caller frames that arrive late are ahead of the call clock by the
# silence put in their place, and so is everything timed from them (the caller's last
# speech, and the filler that follows it). Quiet late frames, as many as were filled, are
# dropped to bring the timeline back; frames with speech in them are always kept.
QUIET_PEAK = 300  # |sample| below this throughout: no speech (line noise is lower)


class SipCallTransport:
    """``CallTransport`` for one answered SIP call (8 kHz, 20 ms int16 frames)."""

    name = "sip"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        leg: WorkerLeg,
        call_id: str,
        caller: str | None,
        transfer: TransferSettings,
        staff_console: Any | None = None,
    ):
        self.leg = leg
        self.failure: str | None = None  # why the system, not the caller, ended the call
        self.call_id = call_id
        self.caller = caller
        self.transfer_settings = transfer
        self.staff_console = staff_console
        self.handed_to_console = False  # a staff console now owns the audio
        self.transferred_to: str | None = None  # the target that took the call
        self.hangup_code: int | None = None  # SIP status with which the call ended
        self._inbound: asyncio.Queue[AudioFrame | DtmfFrame | None] = asyncio.Queue()
        self._partial = b""
        self._created = time.perf_counter()
        self._first_frame_ms: float | None = None
        self._frames_in = 0
        self._play_until = 0.0  # monotonic time by which the queued bot audio has played
        self._closed = asyncio.Event()
        self._hangup_sent = False
        self._drained: asyncio.Future[None] | None = None
        self._refer: asyncio.Future[tuple[int, str]] | None = None
        self.frames_sent = 0  # 20 ms frames of bot audio handed to the worker
        self.frames_dropped = 0  # caller frames dropped because nobody read them
        self.frames_filled = 0  # silent frames that stood in for caller audio not delivered
        self.frames_skipped = 0  # quiet late frames dropped to give the filled time back
        self._owed = 0  # filled frames not yet given back
        self._fill: deque[AudioFrame] = deque()
        leg.events = self

    # -- from the worker (LegEvents, on the event loop) ---------------------------------------
    def pcm_received(self, pcm: bytes) -> None:
        if self._first_frame_ms is None:
            self._first_frame_ms = (time.perf_counter() - self._created) * 1000.0
        if self._owed and _quiet(pcm):  # its time was filled with silence already
            self._owed -= 1
            self.frames_skipped += 1
            return
        t = self._next_frame_ms()
        if self._inbound.qsize() >= MAX_INBOUND_FRAMES:
            if not self.frames_dropped:
                log.warning("SIP call %s: caller audio not read; dropping it", self.call_id)
            self.frames_dropped += 1
            return
        self._inbound.put_nowait(AudioFrame(pcm, SAMPLE_RATE, t))

    def dtmf_received(self, digit: str) -> None:
        try:
            frame = DtmfFrame(digit.upper())
        except ValueError:
            log.warning("SIP call %s: ignoring unknown DTMF %r", self.call_id, digit)
            return
        log.debug("SIP call %s: a key was pressed", self.call_id)  # never which: a number
        self._inbound.put_nowait(frame)

    def transfer_status(self, code: int, reason: str, final: bool) -> None:
        log.info("SIP call %s: transfer status %d %s%s", self.call_id, code, reason,
                 " (final)" if final else "")  # fmt: skip
        if final:
            self._refer_done(code, reason)

    def drained(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def disconnected(self, code: int, reason: str) -> None:
        if self._closed.is_set():
            return
        log.info("SIP call %s: ended (%d %s)", self.call_id, code, reason)
        self.hangup_code = code
        self.failure = self.leg.failure  # the worker died: the line was cut, not hung up
        self._closed.set()
        self._inbound.put_nowait(None)
        self._refer_done(487, "call ended")
        self.drained()

    def _refer_done(self, code: int, reason: str) -> None:
        if self._refer is not None and not self._refer.done():
            self._refer.set_result((code, reason))

    # -- CallTransport ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Until the SIP dialog has ended (either side hung up)."""
        await self._closed.wait()

    async def receive(self) -> AudioFrame | DtmfFrame | None:
        """The next caller frame, a key press, or None: hung up.

        Once media flows the call clock never stops: if the worker delivers nothing for
        ``GAP_FILL_MS`` (a stalled link, a caller's phone that stops sending), silence
        stamped on the call's timeline stands in, so the bot keeps speaking and its
        fillers and no-input timers keep running.
        """
        if self._closed.is_set() and self._inbound.empty():
            return None
        if self._fill:
            return self._fill.popleft()
        if self._first_frame_ms is None:
            return await self._inbound.get()  # the worker's media timeout ends this wait
        try:
            async with asyncio.timeout(GAP_FILL_MS / 1000):
                return await self._inbound.get()
        except TimeoutError:
            if self._closed.is_set():
                return None
            for _ in range(GAP_FILL_MS // FRAME_MS):
                self._fill.append(AudioFrame(SILENT_FRAME, SAMPLE_RATE, self._next_frame_ms()))
            self.frames_filled += len(self._fill)
            self._owed += len(self._fill)
            return self._fill.popleft()

    def _next_frame_ms(self) -> float:
        """Call time of the next caller frame: frames are 20 ms apart, filled or not."""
        assert self._first_frame_ms is not None
        t = self._first_frame_ms + self._frames_in * FRAME_MS
        self._frames_in += 1
        return t

    async def send(self, frame: AudioFrame) -> None:
        if frame.sample_rate != SAMPLE_RATE:
            raise ValueError(f"SIP calls carry {SAMPLE_RATE} Hz audio, got {frame.sample_rate} Hz")
        if self._closed.is_set():
            return
        pcm = self._partial + frame.pcm if self._partial else frame.pcm
        while len(pcm) >= FRAME_BYTES:
            self._play(pcm[:FRAME_BYTES])
            pcm = pcm[FRAME_BYTES:]
        self._partial = pcm

    def _play(self, pcm: bytes) -> None:
        self.leg.play(pcm)
        self.frames_sent += 1
        self._play_until = max(self._play_until, time.monotonic()) + FRAME_MS / 1000

    async def drain(self) -> None:
        """Wait until the bot audio queued so far has been played to the caller."""
        if self._closed.is_set():
            return
        if self._partial:
            self._play(self._partial.ljust(FRAME_BYTES, b"\0"))
            self._partial = b""
        self._drained = asyncio.get_running_loop().create_future()
        self.leg.drain()
        timeout = max(0.0, self._play_until - time.monotonic()) + DRAIN_GRACE_S
        try:
            await asyncio.wait_for(self._drained, timeout)
        except TimeoutError:
            log.warning("SIP call %s: bot audio still playing after %.1f s", self.call_id, timeout)
        finally:
            self._drained = None

    async def hangup(self) -> None:
        """BYE, once the caller has heard the bot's last words."""
        await self.drain()
        await self._bye()

    async def _bye(self) -> None:
        if self._hangup_sent or self._closed.is_set():
            return
        self._hangup_sent = True
        try:
            await self.leg.hangup()
        except Exception as exc:  # the worker stopped: the call is gone with it
            log.warning("SIP call %s: hangup failed: %s", self.call_id, exc)

    # -- transfer ---------------------------------------------------------------------------
    async def transfer(self, handover: Handover) -> str | None:
        """Try each configured target in order; TransferError if none took the call."""
        await self.drain()  # the caller hears the whole transfer notice first
        failures: list[str] = []
        for target in self.transfer_settings.targets:
            if self._closed.is_set():
                raise TransferError("the caller hung up")  # receive() returns None next
            try:
                if target == "console":
                    await self._to_console(handover)
                elif target.startswith(("sip:", "sips:")):
                    await self._refer_to(target)
                else:
                    raise TransferError(f"unknown transfer target {target!r}")
            except TransferError as exc:
                log.warning("SIP call %s: transfer to %s failed: %s", self.call_id, target, exc)
                failures.append(f"{target}: {exc}")
                continue
            self.transferred_to = target
            return target
        raise TransferError("; ".join(failures) or "no transfer targets configured")

    async def _to_console(self, handover: Handover) -> None:
        if self.staff_console is None:
            raise TransferError("no staff console on this service")
        await self.staff_console.offer(
            self, handover, self.call_id, self.transfer_settings.ring_timeout_s
        )
        self.handed_to_console = True

    async def _refer_to(self, uri: str) -> None:
        """Blind transfer: REFER, wait for the final NOTIFY, then leave the call."""
        self._refer = asyncio.get_running_loop().create_future()
        try:
            await self.leg.refer(uri)
            code, reason = await asyncio.wait_for(
                asyncio.shield(self._refer), self.transfer_settings.refer_timeout_s
            )
        except TimeoutError:
            timeout = self.transfer_settings.refer_timeout_s
            raise TransferError(f"no answer to REFER within {timeout:g} s") from None
        except TransferError:
            raise
        except Exception as exc:  # pjsua2 refused to send it (call gone, bad URI)
            raise TransferError(f"REFER not sent: {exc}") from exc
        finally:
            self._refer = None
        if not 200 <= code < 300:
            raise TransferError(f"REFER answered {code} {reason}")
        log.info("SIP call %s: transferred to %s; leaving the call", self.call_id, uri)
        await self._bye()

    async def close(self) -> None:
        """End the SIP leg if it is still up (after the conversation is over)."""
        if not self._closed.is_set():
            await self._bye()


def _quiet(pcm: bytes) -> bool:
    """No sample of the frame reaches ``QUIET_PEAK``: no speech in it."""
    samples = np.frombuffer(pcm, dtype="<i2")
    return int(np.abs(samples.astype(np.int32)).max(initial=0)) < QUIET_PEAK
