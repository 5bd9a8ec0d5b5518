"""The call recorder: every call event written to the database as it happens.

``CallRecorder`` is an ``EventSink``. The call loop must never wait for a database, so
``emit`` only puts the event on a queue; one writer thread applies events in order and
commits each small batch (whatever arrived while the previous batch was written), so a
crash mid-call loses nothing that was already said. A database error never reaches the
call: the batch is retried, then kept in memory and retried until the database is back.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session

from dashboards.call_records import (
    ANSWER_KINDS,
    Call,
    CallError,
    Transfer,
    Turn,
    utc_from_epoch,
)
from dashboards.db import Database
from privacy.masking import mask_text
from voicebot.events import (
    BotSpeechStarted,
    CallEnded,
    CallerSpeechEnded,
    CallEvent,
    CallStarted,
    ComponentFailed,
    IntentDecided,
    Recognized,
    TransferAnswered,
    TransferFailed,
    TransferRequested,
)

log = logging.getLogger(__name__)

# Events that change the records; the others (speech started, bot stopped) are not stored.
RECORDED = (
    CallStarted,
    CallerSpeechEnded,
    Recognized,
    IntentDecided,
    BotSpeechStarted,
    TransferRequested,
    TransferAnswered,
    TransferFailed,
    CallEnded,
    ComponentFailed,
)
# Keys of a handover summary whose values are what the caller said.
_CALLER_TEXT_KEYS = frozenset({"heard", "text", "caller"})
# Bot speech that only tells a waiting caller the reply is coming (「少々お待ちください」):
# never a turn's reply, so the reply's kind and latency are those of the real reply after it.
FILLER_KIND = "filler"


def default_masker() -> Callable[[str], str]:
    """``privacy.masking.mask_text``: the pipeline masks events before any sink sees them;
    masking again here is a second line of defence for a recorder wired up without the
    masking sink."""
    return mask_text


def _refused(exc: BaseException) -> bool:
    """True if the database refused this data, as opposed to being unavailable."""
    if isinstance(exc, DataError | IntegrityError | ValueError | TypeError):
        return True
    # Raised before the statement reached the database (binding or serialising a value).
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


def _clip(text: str | None, length: int) -> str | None:
    """Fit ``text`` into a VARCHAR(length) (PostgreSQL refuses longer values)."""
    return None if text is None else text[:length]


@dataclass
class _Barrier:
    """Put on the queue by ``flush``/``close``: set once everything before it is handled."""

    done: threading.Event = field(default_factory=threading.Event)
    stop: bool = False


class CallRecorder:
    """EventSink that writes calls, turns, transfers and errors to ``db``.

    ``emit`` returns at once. ``flush`` waits until everything emitted so far is
    committed; ``close`` flushes and stops the writer thread.
    """

    def __init__(
        self,
        db: Database,
        *,
        site: str = "default",
        retry_delays_s: Sequence[float] = (0.05, 0.25, 1.0),
        retry_interval_s: float = 5.0,
        max_batch: int = 500,
        max_unwritten: int = 200_000,
        mask: Callable[[str], str] | None = None,
    ):
        self.db = db
        self.site = site
        self.retry_delays_s = tuple(retry_delays_s)
        self.retry_interval_s = retry_interval_s
        self.max_batch = max_batch
        self.max_unwritten = max_unwritten
        self._mask_text = mask or default_masker()
        self._queue: queue.SimpleQueue[CallEvent | _Barrier] = queue.SimpleQueue()
        self._unwritten: list[CallEvent] = []  # writer thread only
        self._closed = False
        self.written = 0  # events committed
        self.dropped = 0  # events given up on (poison events, memory bound)
        self.failures = 0  # failed write attempts
        self._thread = threading.Thread(target=self._run, name="call-recorder", daemon=True)
        self._thread.start()

    # -- EventSink -----------------------------------------------------------------------
    def emit(self, event: CallEvent) -> None:
        """Queue ``event`` for the writer; never blocks, never raises into the call."""
        if not isinstance(event, RECORDED):
            return
        if self._closed:
            log.error(
                "call recorder is closed: %s of call %s not recorded", event.name, event.call_id
            )
            return
        self._queue.put(event)

    # -- control -------------------------------------------------------------------------
    @property
    def unwritten(self) -> int:
        """Events received but not committed yet (waiting, or kept through a DB outage)."""
        return len(self._unwritten) + self._queue.qsize()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event emitted so far is committed; False if that did not happen."""
        if not self._thread.is_alive():
            return not self.unwritten
        barrier = _Barrier()
        self._queue.put(barrier)
        return barrier.done.wait(timeout) and not self._unwritten

    def close(self, timeout: float = 10.0) -> int:
        """Flush and stop the writer. Returns the number of events that could not be written."""
        if not self._closed:
            self._closed = True
            self._queue.put(_Barrier(stop=True))
        self._thread.join(timeout)
        left = self.unwritten
        if left:
            log.error("call recorder closed with %d events not written", left)
        return left

    # -- writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.retry_interval_s if self._unwritten else None)
            except queue.Empty:
                self._write_unwritten()  # the database may be back
                continue
            items = [first]
            while len(items) < self.max_batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            barriers = [i for i in items if isinstance(i, _Barrier)]
            self._unwritten.extend(i for i in items if not isinstance(i, _Barrier))
            self._bound_memory()
            if self._unwritten:
                self._write_unwritten()
            for barrier in barriers:
                barrier.done.set()
            if any(b.stop for b in barriers):
                return

    def _bound_memory(self) -> None:
        excess = len(self._unwritten) - self.max_unwritten
        if excess > 0:
            log.error("database unavailable too long: dropping the %d oldest call events", excess)
            del self._unwritten[:excess]
            self.dropped += excess

    def _write_unwritten(self) -> None:
        """Commit the unwritten events as one batch, in order, retrying a few times.

        While the database is unavailable (connection lost, locked, a table missing) every
        event is kept, in order, for the next attempt. An event the database refuses as
        such (a value it cannot store) would block every call after it: the batch is then
        written one event at a time and only the refused events are dropped.
        """
        batch = list(self._unwritten)
        error: Exception | None = None
        for delay in (0.0, *self.retry_delays_s):
            if delay:
                time.sleep(delay)
            try:
                self._commit(batch)
            except Exception as exc:
                error = exc
                self.failures += 1
                log.warning("call records: writing %d events failed: %s", len(batch), exc)
                if _refused(exc):
                    break
                continue
            del self._unwritten[: len(batch)]
            self.written += len(batch)
            return
        if error is not None and _refused(error):
            self._write_one_by_one(batch)
        else:
            log.error("call records: database unavailable; %d events kept", len(self._unwritten))

    def _write_one_by_one(self, batch: list[CallEvent]) -> None:
        done = 0
        for event in batch:
            try:
                self._commit([event])
            except Exception as exc:
                self.failures += 1
                if not _refused(exc):
                    log.error("call records: database unavailable; events kept", exc_info=True)
                    break
                self.dropped += 1
                log.error(
                    "call records: dropping an event the database refuses: %r (%s)", event, exc
                )
            else:
                self.written += 1
            done += 1
        del self._unwritten[:done]

    def _commit(self, events: list[CallEvent]) -> None:
        with self.db.session() as session:
            for event in events:
                self._apply(session, event)

    # -- event → rows --------------------------------------------------------------------
    def _apply(self, session: Session, event: CallEvent) -> None:
        call = self._call(session, event)
        at = utc_from_epoch(event.wall_time)
        match event:
            case CallStarted():
                call.transport = _clip(event.transport, 32) or "unknown"
                call.caller = _clip(self._mask_opt(event.caller), 128)
                call.started_at = utc_from_epoch(event.wall_time - event.t_ms / 1000.0)
            case CallerSpeechEnded():
                turn = self._open_turn(session, call, at)
                if turn.speech_start_ms is None:
                    turn.speech_start_ms = event.speech_start_ms
                turn.speech_end_ms = event.last_speech_ms
                turn.at = at
            case Recognized():
                turn = self._open_turn(session, call, at)
                turn.text = self._mask(event.text)
                turn.final = event.final
                turn.asr_ms = event.processing_ms
            case IntentDecided():
                turn = self._open_turn(session, call, at)
                turn.text = self._mask(event.text)
                turn.final = True
                turn.decided_at = at
                turn.faq_id = _clip(event.faq_id, 128)
                turn.score = event.score
                turn.action = _clip(event.action, 32)
                turn.candidates = [self._mask_json(c) for c in event.candidates]
                call.turn_count = (call.turn_count or 0) + 1
                # Decisions to answer; whether the caller heard the answer is the turn's
                # reply (kind, latency), which the reports read.
                if event.action in ANSWER_KINDS:
                    call.answered_turns = (call.answered_turns or 0) + 1
            case BotSpeechStarted() if event.kind != FILLER_KIND:
                turn = self._latest_turn(session, call)
                if (
                    turn is not None
                    and turn.action is not None
                    and turn.reply_kind is None
                    and (event.latency_ms is not None or event.kind == turn.action)
                ):
                    turn.reply_text = event.text
                    turn.reply_kind = _clip(event.kind, 32)
                    turn.latency_ms = event.latency_ms
            case TransferRequested():
                session.add(
                    Transfer(
                        call_id=call.id,
                        requested_at=at,
                        reason=_clip(event.reason, 32) or "",
                        target=_clip(event.target, 256),
                        summary=self._mask_json(event.summary),
                        status="requested",
                    )
                )
                if call.transfer_reason is None:
                    call.transfer_reason = _clip(event.reason, 32) or ""
            case TransferAnswered() | TransferFailed():
                transfer = session.scalars(
                    select(Transfer)
                    .where(Transfer.call_id == call.id, Transfer.status == "requested")
                    .order_by(Transfer.id.desc())
                    .limit(1)
                ).first()
                if transfer is None:  # the request was never seen (recorder started late)
                    transfer = Transfer(call_id=call.id, requested_at=at, reason="")
                    session.add(transfer)
                transfer.resolved_at = at
                if event.target is not None:
                    transfer.target = _clip(event.target, 256)
                if isinstance(event, TransferAnswered):
                    transfer.status = "answered"
                else:
                    transfer.status = "failed"
                    transfer.failure_reason = event.reason
            case CallEnded():
                call.ended_at = at
                call.outcome = _clip(event.outcome, 16)
                call.duration_ms = event.duration_ms
            case ComponentFailed():
                session.add(
                    CallError(
                        call_id=call.id,
                        at=at,
                        component=_clip(event.component, 64) or "",
                        error=event.error,
                    )
                )
                call.error_count = (call.error_count or 0) + 1

    def _call(self, session: Session, event: CallEvent) -> Call:
        """The call's row, created from any event if its start was never seen."""
        call = session.get(Call, event.call_id)
        if call is None:
            call = Call(
                id=event.call_id,
                site=self.site,
                transport="unknown",
                started_at=utc_from_epoch(event.wall_time - event.t_ms / 1000.0),
                turn_count=0,
                answered_turns=0,
                error_count=0,
            )
            session.add(call)
        return call

    @staticmethod
    def _latest_turn(session: Session, call: Call) -> Turn | None:
        return session.scalars(
            select(Turn).where(Turn.call_id == call.id).order_by(Turn.seq.desc()).limit(1)
        ).first()

    def _open_turn(self, session: Session, call: Call, at: dt.datetime) -> Turn:
        """The caller turn still waiting for a decision, or a new one.

        A caller who pauses mid-sentence produces several speech ends and recognitions
        before the bot decides; they are one turn, whose text is the last recognition.
        """
        latest = self._latest_turn(session, call)
        if latest is not None and latest.action is None:
            return latest
        turn = Turn(call_id=call.id, seq=(latest.seq if latest else 0) + 1, at=at, final=False)
        session.add(turn)
        return turn

    # -- masking -------------------------------------------------------------------------
    def _mask(self, text: str) -> str:
        return self._mask_text(text)

    def _mask_opt(self, text: str | None) -> str | None:
        return None if text is None else self._mask(text)

    def _mask_json(self, value: Any, key: str | None = None) -> Any:
        """Mask what the caller said inside a JSON value (handover summaries, candidates)."""
        if isinstance(value, dict):
            return {k: self._mask_json(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self._mask_json(v, key) for v in value]
        if isinstance(value, str) and key in _CALLER_TEXT_KEYS:
            return self._mask(value)
        return value
