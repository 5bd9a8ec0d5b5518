"""Runs live calls: one ``CallSession`` per incoming transport, all sharing one ``Bot``.

Transports (SIP, WebRTC) hand each new call to ``Switchboard.handle`` and know nothing
else of the conversation; the switchboard knows nothing of how the audio travels. It
keeps the calls in progress so that a shutdown can stop taking new calls and let the
ones in progress finish rather than cut callers off.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from voicebot.bot import Bot
from voicebot.call import CallResult, CallSession
from voicebot.clock import WallClock
from voicebot.events import EventSink
from voicebot.transport import CallTransport

log = logging.getLogger(__name__)


class SwitchboardClosed(RuntimeError):
    """The service is shutting down and takes no new calls."""


@dataclass
class ActiveCall:
    call_id: str
    transport: CallTransport
    session: CallSession
    caller: str | None = None
    task: asyncio.Task[CallResult] | None = field(default=None, repr=False)


class Switchboard:
    """Answers calls with the shared bot and tracks them until they end."""

    def __init__(self, bot: Bot, events: EventSink, now: Callable[[], dt.datetime] | None = None):
        self.bot = bot
        self.events = events
        self._dialogue_kw = {"now": now} if now else {}  # business hours at another time
        self.active: dict[str, ActiveCall] = {}
        self.accepting = True
        self.finished = 0

    def new_call_id(self) -> str:
        return uuid.uuid4().hex[:12]

    async def handle(
        self, transport: CallTransport, caller: str | None = None, call_id: str | None = None
    ) -> CallResult:
        """Run a whole call on ``transport``; returns when it is over."""
        if not self.accepting:
            raise SwitchboardClosed("not accepting calls")
        call_id = call_id or self.new_call_id()
        session = self.bot.session(
            transport, WallClock(), self.events, call_id=call_id, **self._dialogue_kw
        )
        session.caller = caller
        call = ActiveCall(call_id, transport, session, caller)
        call.task = asyncio.current_task()  # type: ignore[assignment]
        self.active[call_id] = call
        # Never the caller's number: the call id ties the log to the masked call record.
        log.info("call %s: started on %s", call_id, transport.name)
        try:
            result = await session.run()
        finally:
            self.active.pop(call_id, None)
            self.finished += 1
        log.info("call %s: %s after %.1f s", call_id, result.outcome, result.duration_ms / 1000)
        return result

    async def drain(self, grace_s: float = 30.0) -> None:
        """Stop taking calls; let calls in progress finish, then close the rest politely."""
        self.accepting = False
        if not self.active:
            return
        log.info("waiting up to %.0f s for %d call(s) in progress", grace_s, len(self.active))
        tasks = [c.task for c in self.active.values() if c.task is not None]
        _done, pending = await asyncio.wait(tasks, timeout=grace_s) if tasks else (set(), set())
        if not pending:
            return
        # Calls still going: say goodbye (or hand over) instead of cutting the line.
        await asyncio.gather(
            *(c.session.close_for_shutdown() for c in list(self.active.values())),
            return_exceptions=True,
        )
        await asyncio.wait(pending, timeout=15.0)
