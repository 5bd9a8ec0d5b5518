"""Retention: old calls go with all their rows, recent ones stay; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

import dbfixtures
import pytest
from dbfixtures import ScriptedTurn, record, scripted_call
from sqlalchemy import func, select

from dashboards.call_records import Call, CallError, Transfer, Turn
from dashboards.config import RetentionSettings
from dashboards.recorder import CallRecorder
from dashboards.retention import PurgeCounts, purge, retention_job
from voicebot.events import ComponentFailed

# The same tests on SQLite and PostgreSQL (fixtures from dbfixtures).
postgres_url = dbfixtures.postgres_url
database_url = dbfixtures.database_url
db = dbfixtures.db

NOW = dt.datetime(2026, 11, 24, 3, 0, tzinfo=dt.UTC)


def call_aged(call_id: str, days: float, turns: int = 2, transfer: bool = False):
    start = NOW - dt.timedelta(days=days)
    return scripted_call(
        call_id,
        start,
        [ScriptedTurn(f"質問{i}", faq_id="payment.methods") for i in range(turns)],
        outcome="transferred" if transfer else "completed",
        transfer=("staff_topic", True) if transfer else None,
    )


def counts(db) -> dict[str, int]:
    with db.session() as s:
        return {
            m.__tablename__: s.scalar(select(func.count()).select_from(m))
            for m in (Call, Turn, Transfer, CallError)
        }


@pytest.fixture
def aged_calls(db):
    record(
        db,
        call_aged("old-1", 200, turns=3, transfer=True),
        call_aged("old-2", 90.01, turns=1),
        call_aged("keep-1", 89.99, turns=2, transfer=True),
        call_aged("keep-2", 1, turns=1),
    )
    recorder = CallRecorder(db)  # a component failure on an old call
    recorder.emit(ComponentFailed(call_id="old-2", t_ms=1.0, component="tts", error="x"))
    assert recorder.close() == 0
    return db


def test_purge_deletes_old_calls_with_their_rows(aged_calls):
    db = aged_calls
    assert counts(db) == {"calls": 4, "call_turns": 7, "call_transfers": 2, "call_errors": 1}
    result = purge(db, days=90, now=NOW, batch_size=1)  # one call per transaction
    assert result == PurgeCounts(calls=2, turns=4, transfers=1, errors=1)
    assert result.total == 8
    assert counts(db) == {"calls": 2, "call_turns": 3, "call_transfers": 1, "call_errors": 0}
    with db.session() as s:
        assert sorted(s.scalars(select(Call.id))) == ["keep-1", "keep-2"]
    assert purge(db, days=90, now=NOW) == PurgeCounts()


def test_purge_refuses_nonsense(db):
    with pytest.raises(ValueError, match="at least 1"):
        purge(db, days=0, now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        purge(db, days=30, now=NOW.replace(tzinfo=None))


def test_daily_job_purges_and_keeps_running(db):
    """The job the service starts: purges at once (first delay 0), then at every interval."""
    now = dt.datetime.now(dt.UTC)
    record(
        db,
        scripted_call("old", now - dt.timedelta(days=120), [ScriptedTurn("古い質問")]),
        scripted_call("new", now - dt.timedelta(days=1), [ScriptedTurn("新しい質問")]),
    )
    purged: list[PurgeCounts] = []

    async def main() -> None:
        done = asyncio.Event()

        def on_purged(c: PurgeCounts) -> None:
            purged.append(c)
            if len(purged) == 2:
                done.set()

        job = asyncio.create_task(
            retention_job(
                db,
                RetentionSettings(days=90),
                interval_s=0.01,
                first_delay_s=0.0,
                on_purged=on_purged,
            )
        )
        await asyncio.wait_for(done.wait(), 30)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    asyncio.run(main())
    assert purged[0] == PurgeCounts(calls=1, turns=1)
    assert purged[1] == PurgeCounts()  # nothing left the second time
    with db.session() as s:
        assert list(s.scalars(select(Call.id))) == ["new"]
