"""The browser staff console: transferred calls ring in staff browsers, one staff answers.

A transfer to "console" lands here. The caller hears a ringback tone (never silence)
while every open console page shows the call ringing with the bot's handover summary
(why, which topic, what the caller said and how it was understood). The first staff
member to answer gets a WebRTC leg from their browser; the caller's transport (SIP or
WebRTC) is then bridged to it until either side hangs up. If nobody answers in time,
the ringing entry disappears and ``TransferError`` tells the bot to apologise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from privacy.masking import CallMasker
from telephony.bridge import bridge
from telephony.config import TelephonySettings
from telephony.webrtc import WebRtcTransport
from voicebot.frames import AudioFrame
from voicebot.transport import CallTransport, TransferError

if TYPE_CHECKING:
    from aiortc import RTCSessionDescription

    from voicebot.dialogue import Handover

log = logging.getLogger(__name__)

FRAME_MS = 20


class ConsoleCallGone(LookupError):
    """No such call is ringing or connected (it ended, or was never transferred)."""


class AlreadyAnswered(RuntimeError):
    """Another staff member answered this call first."""


def _call_masker() -> Callable[[str], str]:
    """Masks one call's utterances in order (a number split over two turns is masked in
    both). Staff never see the caller's words unmasked: there is no fallback."""
    return CallMasker().mask


def screen_pop(handover: Handover | None) -> dict[str, Any]:
    """The handover as staff see it, with personal data in what was heard masked."""
    if handover is None:
        return {"reason": "unknown", "topic": None, "turns": []}
    data = handover.as_dict()
    mask = _call_masker()
    turns = []
    for turn in data.get("turns", []):
        turn = dict(turn)
        turn["heard"] = mask(str(turn.get("heard", "")))
        turn["candidates"] = [
            {k: c.get(k) for k in ("faq_id", "title", "score")} for c in turn.get("candidates", [])
        ]
        turns.append(turn)
    data["turns"] = turns
    return data


class RingbackTone:
    """Japanese ringback (呼出音): 400 Hz modulated at 16 Hz, 1 s on, 2 s off, ~-20 dBFS."""

    def __init__(self, rate: int):
        self.rate = rate
        self._n = 0

    def next_frame(self, samples: int) -> np.ndarray:
        t = (self._n + np.arange(samples)) / self.rate
        self._n += samples
        on = (t % 3.0) < 1.0
        envelope = 0.5 * (1.0 + np.sin(2 * math.pi * 16 * t))
        tone = 3200.0 * np.sin(2 * math.pi * 400 * t) * envelope * on
        return np.rint(tone).astype(np.int16)


_END: dict[str, Any] = {}  # put in a page's queue when the console closes


class ConsoleSubscription(AsyncIterator[dict[str, Any]]):
    """One page's stream of console events; ``async for``, then ``close()``."""

    def __init__(self, listeners: set[asyncio.Queue[dict[str, Any]]]):
        self._listeners = listeners
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)
        listeners.add(self._queue)

    def __aiter__(self) -> ConsoleSubscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._queue not in self._listeners and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is _END:
            raise StopAsyncIteration
        return event

    @staticmethod
    def end_all(listeners: set[asyncio.Queue[dict[str, Any]]]) -> None:
        """The console closes: every page's stream ends (after what it was sent), so that
        no open stream holds the web server's shutdown."""
        for queue in list(listeners):
            listeners.discard(queue)
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(_END)

    def close(self) -> None:
        self._listeners.discard(self._queue)

    async def aclose(self) -> None:
        self.close()


@dataclass
class ConsoleCall:
    """A transferred call while it rings or is connected to a staff member."""

    call_id: str
    summary: dict[str, Any]
    transport: str
    timeout_s: float
    state: str = "ringing"  # ringing, connected
    ringing_since: float = field(default_factory=time.time)
    answered_by: str | None = None
    answered_at: float | None = None
    answered: asyncio.Future[WebRtcTransport] | None = field(default=None, repr=False)
    staff_leg: WebRtcTransport | None = field(default=None, repr=False)
    caller_leg: CallTransport | None = field(default=None, repr=False)
    bridge_task: asyncio.Task[str] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "state": self.state,
            "summary": self.summary,
            "transport": self.transport,
            "ringing_since": self.ringing_since,
            "timeout_s": self.timeout_s,
            "answered_by": self.answered_by,
            "answered_at": self.answered_at,
        }


class StaffConsole:
    """Rings staff browsers, connects the first to answer, keeps the list for the pages."""

    def __init__(self, settings: TelephonySettings | None = None, bus: Any | None = None):
        self.settings = settings or TelephonySettings()
        self.bus = bus  # dashboards.event_bus.EventBus: publish_dict for the live monitor
        self._calls: dict[str, ConsoleCall] = {}
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self.connected_total = 0
        self.missed_total = 0
        self._closed = False

    # -- what the pages read -------------------------------------------------------------
    def calls(self) -> list[dict[str, Any]]:
        """Ringing and connected calls, oldest first."""
        return [c.as_dict() for c in sorted(self._calls.values(), key=lambda c: c.ringing_since)]

    def subscribe(self) -> ConsoleSubscription:
        """Live console events (staff_ringing, staff_connected, staff_ended, ...).

        Registered at once, so a page can subscribe and then read ``calls()`` without
        missing anything in between.
        """
        subscription = ConsoleSubscription(self._listeners)
        if self._closed:  # shutting down: the stream ends at once
            ConsoleSubscription.end_all(self._listeners)
        return subscription

    def _publish(self, kind: str, call: ConsoleCall, **extra: Any) -> None:
        event = {"event": kind, "call_id": call.call_id, "wall_time": time.time()}
        event.update(call.as_dict())
        event.update(extra)
        for queue in list(self._listeners):
            if queue.full():  # a stalled page loses its oldest news, not the call
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)
        publish = getattr(self.bus, "publish_dict", None)
        if publish is not None:
            try:
                publish(event)
            except Exception:
                log.exception("console: publishing %s failed", kind)

    # -- the transfer side ---------------------------------------------------------------
    async def offer(
        self, transport: CallTransport, handover: Handover | None, call_id: str, timeout_s: float
    ) -> None:
        """Ring staff; return once one answered and their audio flows (the bridge then runs).

        Raises ``TransferError`` if nobody answered within ``timeout_s`` or the caller
        hung up while it rang. The caller hears a ringback tone until staff are heard, so
        there is no dead air while the staff browser connects; a staff leg that fails to
        connect puts the call back to ringing for someone else.
        """
        if call_id in self._calls:
            raise TransferError(f"call {call_id} is already with the staff console")
        call = ConsoleCall(
            call_id=call_id,
            summary=screen_pop(handover),
            transport=transport.name,
            timeout_s=timeout_s,
            answered=asyncio.get_running_loop().create_future(),
            caller_leg=transport,
        )
        self._calls[call_id] = call
        self._publish("staff_ringing", call)
        log.info("console: call %s ringing (%s)", call_id, call.summary.get("reason"))
        staff_leg, pending_frame = await self._ring(call, transport, timeout_s)
        call.staff_leg = staff_leg
        call.state = "connected"
        self.connected_total += 1
        self._publish("staff_connected", call)
        log.info("console: call %s answered by %s", call_id, call.answered_by)
        call.bridge_task = asyncio.create_task(
            self._run_bridge(call, transport, staff_leg, pending_frame),
            name=f"bridge-{call_id}",
        )

    async def _ring(
        self, call: ConsoleCall, transport: CallTransport, timeout_s: float
    ) -> tuple[WebRtcTransport, Any]:
        """Ringback to the caller until a staff leg connects: the leg, and a caller frame
        read meanwhile (the bridge takes it over)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        tone = RingbackTone(transport.sample_rate)
        receiving: asyncio.Future[Any] | None = None
        staff_leg: WebRtcTransport | None = None
        try:
            while True:
                if receiving is None:
                    receiving = asyncio.ensure_future(transport.receive())
                waiters: set[asyncio.Future[Any]] = {receiving}
                if staff_leg is None:
                    if call.answered.done():
                        staff_leg = call.answered.result()
                        continue
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        self.missed_total += 1
                        self._drop(call, "staff_missed")
                        raise TransferError("no staff answered")
                    waiters.add(call.answered)
                elif staff_leg.connected:
                    break
                elif staff_leg.ended:
                    self._ring_again(call)
                    staff_leg = None
                    continue
                else:
                    timeout = 0.05  # staff answered; their audio is on its way
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if receiving.done():
                    frame, receiving = receiving.result(), None
                    await self._ringback(call, transport, tone, frame, staff_leg)
            # The bridge reads the caller from now on; a read under way goes along with it.
            return staff_leg, (await receiving if receiving is not None else None)
        except BaseException:
            if receiving is not None:
                receiving.cancel()
            if staff_leg is not None and not staff_leg.ended:
                await staff_leg.hangup()
            self._drop(call, "staff_missed")
            raise

    def _ring_again(self, call: ConsoleCall) -> None:
        """The staff leg failed to connect: ring for someone else."""
        log.warning("console: call %s: staff leg failed to connect", call.call_id)
        call.answered = asyncio.get_running_loop().create_future()
        call.state, call.answered_by, call.answered_at = "ringing", None, None
        self._publish("staff_ringing", call)

    async def _ringback(
        self,
        call: ConsoleCall,
        transport: CallTransport,
        tone: RingbackTone,
        frame: Any,
        staff_leg: WebRtcTransport | None,
    ) -> None:
        """One caller frame while staff are rung: a ringback frame back, or the caller left."""
        if frame is None:
            if staff_leg is not None:
                await staff_leg.hangup()
            self._drop(call, "staff_abandoned")
            raise TransferError("the caller hung up while staff were rung")
        if isinstance(frame, AudioFrame):
            rate = transport.sample_rate
            ringback = tone.next_frame(rate * FRAME_MS // 1000)
            await transport.send(AudioFrame.from_samples(ringback, rate))

    async def _run_bridge(
        self, call: ConsoleCall, caller: CallTransport, staff: WebRtcTransport, first: Any
    ) -> None:
        ended_by = "unknown"
        try:
            ended_by = await bridge(caller, staff, first)
        except Exception:
            log.exception("console: bridge of call %s failed", call.call_id)
        finally:
            self._drop(call, "staff_ended", ended_by=ended_by)

    def _drop(self, call: ConsoleCall, kind: str, **extra: Any) -> None:
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
            self._publish(kind, call, **extra)

    # -- the staff side ------------------------------------------------------------------
    async def answer(
        self, call_id: str, offer_sdp: str, offer_type: str, staff_user: str
    ) -> RTCSessionDescription:
        """A staff browser answers a ringing call with its own WebRTC offer.

        Raises ``ConsoleCallGone`` (not ringing any more), ``AlreadyAnswered`` (another
        staff member was first) or ``telephony.webrtc.SignallingError`` (bad SDP; the
        call keeps ringing for someone else).
        """
        call = self._calls.get(call_id)
        if call is None:
            raise ConsoleCallGone(f"call {call_id} is not ringing")
        if call.state != "ringing" or call.answered is None or call.answered.done():
            raise AlreadyAnswered(f"call {call_id} was already answered by {call.answered_by}")
        call.state = "answering"
        try:
            leg, answer = await WebRtcTransport.answer(
                offer_sdp, offer_type, call_id=f"{call_id}-staff", settings=self.settings
            )
        except Exception:
            if call.state == "answering":
                call.state = "ringing"
            raise
        if self._calls.get(call_id) is not call or call.answered.done():
            await leg.hangup()  # the caller gave up (or the ring timed out) meanwhile
            raise ConsoleCallGone(f"call {call_id} ended while it was being answered")
        call.answered_by = staff_user
        call.answered_at = time.time()
        call.answered.set_result(leg)
        return answer

    async def hangup(self, call_id: str, staff_user: str | None = None, admin: bool = True) -> None:
        """Staff end the call (終話): both legs are closed. With ``staff_user`` (and not
        ``admin``), only the staff member who answered may: PermissionError otherwise."""
        call = self._calls.get(call_id)
        if call is None:
            raise ConsoleCallGone(f"call {call_id} is not connected")
        if staff_user is not None and not admin and call.answered_by != staff_user:
            raise PermissionError(f"call {call_id} was answered by someone else")
        if call.staff_leg is not None:
            await call.staff_leg.hangup()  # the bridge then hangs up the caller
        elif call.caller_leg is not None:
            raise ConsoleCallGone(f"call {call_id} is ringing, not connected")
        if call.bridge_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(call.bridge_task), 5.0)

    async def drain(self, grace_s: float = 30.0) -> None:
        """Service shutdown: let staff finish their conversations, then end what is left.

        A caller talking to staff is not the bot's to cut off: staff see a notice on the
        console (``staff_draining``) and have ``grace_s`` to say goodbye; only calls still
        bridged after that are closed. Ringing calls end in their own ``offer()``.
        """
        bridged = [c for c in self._calls.values() if c.bridge_task is not None]
        if bridged:
            log.info("console: waiting up to %.0f s for %d staff call(s)", grace_s, len(bridged))
            for call in bridged:
                self._publish("staff_draining", call, grace_s=grace_s)
            tasks = [c.bridge_task for c in bridged if c.bridge_task is not None]
            await asyncio.wait(tasks, timeout=grace_s)
        await self.close()

    async def close(self) -> None:
        """Service shutdown: end bridged calls (ringing ones time out in their offer())
        and the pages' event streams."""
        for call in list(self._calls.values()):
            if call.staff_leg is not None:
                with contextlib.suppress(Exception):
                    await call.staff_leg.hangup()
            if call.bridge_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(call.bridge_task, 5.0)
        self._closed = True
        ConsoleSubscription.end_all(self._listeners)
