"""WebRTC calls to the bot: an SDP offer in, an answer out, the call on the switchboard.

The WebRTC counterpart of ``sip_endpoint``: it decides whether a call may start (the
service is up and taking calls, the owner has no call yet, the line is not full), answers
the offer, runs the call on the shared switchboard and keeps it until the connection ends.
The web app only carries the offer and the answer; everything about the call is here.

Calls are counted before the offer is answered, so that offers sent at once cannot all
pass the check: each holds media ports, a recognition and synthesis turn and a
switchboard line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from enum import Enum
from typing import Any

from telephony.config import TelephonySettings
from telephony.webrtc import SignallingError, WebRtcTransport
from voicebot.switchboard import Switchboard, SwitchboardClosed

log = logging.getLogger(__name__)


class Refusal(Enum):
    """Why a WebRTC call was not started."""

    UNAVAILABLE = "unavailable"  # no bot, or WebRTC switched off
    STOPPING = "stopping"  # the service is shutting down
    OWNER_BUSY = "owner_busy"  # this owner already has their calls
    FULL = "full"  # the endpoint has all the calls it takes
    BAD_OFFER = "bad_offer"  # the SDP offer cannot be used


class CallRefused(Exception):
    """The call was not started; ``reason`` says why (and ``detail`` for a bad offer)."""

    def __init__(self, reason: Refusal, detail: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason = reason
        self.detail = detail


@dataclass
class WebRtcCall:
    """One call this endpoint took, until its connection ends."""

    call_id: str
    owner: str
    transport: WebRtcTransport | None = None  # None while the offer is being answered
    task: asyncio.Task[Any] | None = None


class WebRtcEndpoint:
    """Takes WebRTC calls for a switchboard, with a cap in all and per owner."""

    def __init__(
        self,
        settings: TelephonySettings,
        switchboard: Switchboard | None,
        *,
        max_calls: int,
        calls_per_owner: int = 1,
        staff_console: Any | None = None,
    ) -> None:
        self.settings = settings
        self.switchboard = switchboard
        self.max_calls = max_calls
        self.calls_per_owner = calls_per_owner
        self.staff_console = staff_console
        self.calls: dict[str, WebRtcCall] = {}

    @property
    def available(self) -> bool:
        """A bot is running and WebRTC calls are switched on."""
        return self.switchboard is not None and self.settings.webrtc.enabled

    def call(self, call_id: str) -> WebRtcCall | None:
        """A call in progress (connected), or None."""
        call = self.calls.get(call_id)
        return call if call is not None and call.transport is not None else None

    async def accept(self, sdp: str, sdp_type: str, *, owner: str, caller: str) -> tuple[str, Any]:
        """Start a call from ``owner``'s offer: the call's id and the SDP answer.

        Raises ``CallRefused`` if the call may not start or the offer is unusable.
        """
        self._check_room(owner)
        switchboard = self.switchboard
        call_id = switchboard.new_call_id()
        call = self.calls[call_id] = WebRtcCall(call_id, owner)
        try:
            transport, answer = await WebRtcTransport.answer(
                sdp,
                sdp_type,
                call_id=call_id,
                settings=self.settings,
                staff_console=self.staff_console,
            )
        except SignallingError as exc:
            self.calls.pop(call_id, None)
            raise CallRefused(Refusal.BAD_OFFER, str(exc)) from None
        except BaseException:
            self.calls.pop(call_id, None)
            raise
        call.transport = transport
        transport.on_end(lambda _t: self.calls.pop(call_id, None))
        call.task = asyncio.create_task(self._run(call, caller), name=f"webrtc-{call_id}")
        log.info("WebRTC %s: call from %s", call_id, owner)
        return call_id, answer

    def _check_room(self, owner: str) -> None:
        if not self.available:
            raise CallRefused(Refusal.UNAVAILABLE)
        if not self.switchboard.accepting:
            raise CallRefused(Refusal.STOPPING)
        if sum(c.owner == owner for c in self.calls.values()) >= self.calls_per_owner:
            raise CallRefused(Refusal.OWNER_BUSY)
        if len(self.calls) >= self.max_calls:
            raise CallRefused(Refusal.FULL)

    async def hang_up(self, call_id: str) -> None:
        """End a call (the caller's page closed or pressed hang up)."""
        call = self.call(call_id)
        if call is not None:
            await call.transport.hangup()

    async def _run(self, call: WebRtcCall, caller: str) -> None:
        """The call on the switchboard; the line is closed unless staff took it over."""
        transport = call.transport
        outcome = None
        try:
            result = await self.switchboard.handle(transport, caller=caller, call_id=call.call_id)
            outcome = result.outcome
        except SwitchboardClosed:
            log.info("WebRTC %s: refused, the service is shutting down", call.call_id)
        except Exception:
            log.exception("WebRTC %s: the call failed", call.call_id)
        finally:
            if outcome != "transferred":  # after a transfer the staff bridge owns the line
                with contextlib.suppress(Exception):
                    await transport.hangup()
