"""Tables of call records: calls, the caller's turns, transfers and component failures.

One row per call (``calls``) is written when the call starts and completed when it ends,
so a call in progress is visible and a crash leaves everything said so far on disk. Text
the caller said is stored masked (the event pipeline masks it; the recorder masks again).
Times are timezone-aware UTC on both SQLite and PostgreSQL (``UtcDateTime``); turn timings
inside a call are in milliseconds on the call's own clock (0 = call start).

Each call names the node (setting ``node``, default the host name) whose process took it:
a node starting again after its process was killed closes only the calls it had cut off
(outcome ``abandoned``), never those another node sharing the database is still taking.
"""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dashboards.db import Base, Database

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer, "sqlite")

# "abandoned": the process taking the call died (killed, crashed) and it was closed at restart.
OUTCOMES = ("completed", "transferred", "hung_up", "hung_up_waiting", "error", "abandoned")
# Reply kinds that give the caller what they asked for (an FAQ answer or where to go, a
# charge that is not a tax included).
ANSWER_KINDS = ("answer", "redirect", "not_a_tax")


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so values are stored as
    naive UTC and made aware again when read. Naive values are refused on the way in:
    a local time silently taken for UTC would shift every report by nine hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: call records need timezone-aware times")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


_this_node = socket.gethostname()


def set_this_node(name: str) -> None:
    """Name the node this process runs as; every call row created afterwards carries it.

    The node is an identity of the whole process (one ``voicebot serve`` per node name), so
    it is kept here once at start-up rather than passed through every writer of call rows.
    """
    global _this_node
    _this_node = name


def this_node() -> str:
    """The node name new call rows get (the host name until ``set_this_node``)."""
    return _this_node


def utc_from_epoch(seconds: float) -> dt.datetime:
    """An event's ``wall_time`` (epoch seconds) as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class Call(Base):
    """One call. ``outcome`` is NULL while the call is in progress."""

    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the call_id of events
    site: Mapped[str] = mapped_column(String(64), default="default")
    # Node whose process took the call; NULL on rows written before nodes were recorded.
    node: Mapped[str | None] = mapped_column(String(128), default=lambda: _this_node)
    transport: Mapped[str] = mapped_column(String(32), default="unknown")
    caller: Mapped[str | None] = mapped_column(String(128))  # masked
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))
    duration_ms: Mapped[float | None] = mapped_column(Float)
    turn_count: Mapped[int] = mapped_column(Integer, default=0)  # caller turns decided
    answered_turns: Mapped[int] = mapped_column(Integer, default=0)  # answered or redirected
    transfer_reason: Mapped[str | None] = mapped_column(String(32))  # first transfer requested
    error_count: Mapped[int] = mapped_column(Integer, default=0)

    turns: Mapped[list[Turn]] = relationship(
        back_populates="call", cascade="all, delete-orphan", passive_deletes=True
    )
    transfers: Mapped[list[Transfer]] = relationship(
        back_populates="call", cascade="all, delete-orphan", passive_deletes=True
    )
    errors: Mapped[list[CallError]] = relationship(
        back_populates="call", cascade="all, delete-orphan", passive_deletes=True
    )


class Turn(Base):
    """One caller utterance: what was recognised, what the bot decided and replied.

    The row is created when the caller stops speaking, filled in as recognition and the
    decision arrive, and completed with the bot's reply and the reply latency (caller's
    last speech → first bot audio). ``action`` is NULL for speech the bot did not act on.
    """

    __tablename__ = "call_turns"
    __table_args__ = (
        UniqueConstraint("call_id", "seq", name="uq_call_turns_call_seq"),
        Index("ix_call_turns_faq_id", "faq_id"),
        Index("ix_call_turns_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the call
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)  # wall time the caller finished
    speech_start_ms: Mapped[float | None] = mapped_column(Float)
    speech_end_ms: Mapped[float | None] = mapped_column(Float)
    text: Mapped[str | None] = mapped_column(Text)  # recognised text, masked
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    asr_ms: Mapped[float | None] = mapped_column(Float)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    faq_id: Mapped[str | None] = mapped_column(String(128))
    score: Mapped[float | None] = mapped_column(Float)
    action: Mapped[str | None] = mapped_column(String(32))
    candidates: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    reply_text: Mapped[str | None] = mapped_column(Text)
    reply_kind: Mapped[str | None] = mapped_column(String(32))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # unanswered list

    call: Mapped[Call] = relationship(back_populates="turns")


class Transfer(Base):
    """One attempt to hand the call to staff; ``status`` requested → answered | failed."""

    __tablename__ = "call_transfers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.id", ondelete="CASCADE"), index=True
    )
    requested_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(String(32), default="")
    target: Mapped[str | None] = mapped_column(String(256))
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the handover, masked
    status: Mapped[str] = mapped_column(String(16), default="requested")
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    failure_reason: Mapped[str | None] = mapped_column(Text)

    call: Mapped[Call] = relationship(back_populates="transfers")


class CallError(Base):
    """A component failure during a call (recogniser, synthesiser, transport, ...)."""

    __tablename__ = "call_errors"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    component: Mapped[str] = mapped_column(String(64))
    error: Mapped[str] = mapped_column(Text, default="")

    call: Mapped[Call] = relationship(back_populates="errors")


TABLES = [Call.__table__, Turn.__table__, Transfer.__table__, CallError.__table__]


def create_tables(db: Database) -> None:
    """Create only the call-record tables (``Database.create_all`` makes every table)."""
    Base.metadata.create_all(db.engine, tables=TABLES)


def close_cut_calls(db: Database, node: str) -> int:
    """Close the calls ``node``'s previous process left open as ``abandoned``.

    Called when the service starts, before it takes a call: any call of this node still
    open was cut off when the previous process died (SIGKILL, crash, power loss). Each
    ends at the last thing recorded of it (start, caller turns, decisions, transfers,
    failures), the best estimate of when the caller was cut off. Calls of other nodes are
    left alone, as are rows without a node (older releases): ``mark_abandoned`` closes
    those once they are old. Returns how many calls were closed.
    """
    closed = 0
    with db.session() as session:
        calls = session.scalars(select(Call).where(Call.outcome.is_(None), Call.node == node)).all()
        for call in calls:
            ended = last_recorded_at(call)
            call.ended_at = ended
            call.outcome = "abandoned"
            call.duration_ms = (ended - call.started_at).total_seconds() * 1000.0
            closed += 1
    return closed


def close_calls_of_silent_nodes(
    db: Database, silent_for: dt.timedelta, now: dt.datetime | None = None
) -> int:
    """Close as ``abandoned`` the open calls of call nodes that stopped checking in.

    Every node with a bot writes its FAQ version row every few seconds
    (``faq_follower``); a node whose row is older than ``silent_for`` has died (or lost
    the database) and its calls cannot go on. ``close_cut_calls`` would close them only
    when that node starts again under the same name; the surviving nodes run this so that
    the records and reports are right without waiting for it. Returns how many were closed.
    """
    from dashboards.faq_versions import NodeFaqVersion

    seen_before = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None) - silent_for
    with db.session() as session:
        silent = session.scalars(
            select(NodeFaqVersion.node).where(NodeFaqVersion.seen_at < seen_before)
        ).all()
    return sum(close_cut_calls(db, node) for node in silent)


def last_recorded_at(call: Call) -> dt.datetime:
    """The latest time recorded of ``call`` (its start if nothing happened after)."""
    times = [call.started_at]
    for turn in call.turns:
        times += [turn.at, turn.decided_at]
    for transfer in call.transfers:
        times += [transfer.requested_at, transfer.resolved_at]
    times += [error.at for error in call.errors]
    return max(t for t in times if t is not None)


def mark_abandoned(db: Database, older_than: dt.timedelta, now: dt.datetime | None = None) -> int:
    """Close calls of any node that never ended with outcome ``error``: the backstop.

    ``close_cut_calls`` closes a node's own calls when it starts again; this catches the
    calls of a node that never came back (or of rows without a node). Only calls started
    more than ``older_than`` ago are touched, so that a call still in progress on another
    node is left alone. Returns how many calls were closed.
    """
    now = now or dt.datetime.now(dt.UTC)
    with db.session() as session:
        result = session.execute(
            update(Call)
            .where(Call.outcome.is_(None), Call.started_at < now - older_than)
            .values(outcome="error")
        )
        return result.rowcount or 0
