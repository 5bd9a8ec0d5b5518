"""Handing a call to staff: ask the transport, and tell observers who took it or why not."""

from __future__ import annotations

import logging

from voicebot.clock import Clock
from voicebot.dialogue import Handover
from voicebot.events import EventSink, TransferAnswered, TransferFailed, TransferRequested
from voicebot.transport import CallTransport, TransferError

log = logging.getLogger(__name__)


async def hand_over(
    transport: CallTransport,
    handover: Handover | None,
    *,
    call_id: str,
    clock: Clock,
    events: EventSink,
) -> bool:
    """Transfer the call with its handover summary; whether a target took it.

    False means the transfer failed (nobody free, the target refused): the call goes on
    and the bot tells the caller. The target that answered goes out in the event.
    """
    summary = handover.as_dict() if handover else {}
    reason = summary.get("reason", "")
    t_ms = clock.now_ms()
    events.emit(TransferRequested(call_id=call_id, t_ms=t_ms, reason=reason, summary=summary))
    try:
        target = await transport.transfer(handover)
    except TransferError as exc:
        log.warning("call %s: transfer failed: %s", call_id, exc)
        events.emit(TransferFailed(call_id=call_id, t_ms=clock.now_ms(), reason=str(exc)))
        return False
    events.emit(TransferAnswered(call_id=call_id, t_ms=clock.now_ms(), target=target))
    return True
