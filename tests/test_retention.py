"""Retention: old calls go with all their rows, recent ones stay; old audit rows and stale
login-failure counts go too. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

import dbfixtures
import pytest
from dbfixtures import ScriptedTurn, record, scripted_call
from sqlalchemy import func, select, text

from dashboards.accounts import (
    LOCK_MINUTES,
    MAX_FAILED_LOGINS,
    LoginError,
    LoginFailures,
    authenticate,
)
from dashboards.audit import AuditEntry
from dashboards.call_records import Call, CallError, Transfer, Turn
from dashboards.config import RetentionSettings
from dashboards.recorder import CallRecorder
from dashboards.retention import PurgeCounts, apply_retention, purge, retention_job
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


# --- the audit log and login-failure counts ---------------------------------------------------


def _fail(db, username: str, at: dt.datetime, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(LoginError):
            authenticate(db, username, "wrong-password", now=at)


def _failure_rows(db) -> dict[str, int]:
    with db.session() as s:
        return {r.username: r.count for r in s.scalars(select(LoginFailures))}


def test_retention_prunes_stale_login_failures_and_old_audit_rows(db):
    now = NOW.replace(tzinfo=None)  # accounts and audit keep naive UTC
    window = dt.timedelta(minutes=LOCK_MINUTES)
    _fail(db, "guessed-long-ago", now - dt.timedelta(days=3))
    _fail(db, "guessed-at-the-window", now - window)
    _fail(db, "guessed-just-now", now - dt.timedelta(minutes=1))
    _fail(db, "locked-still", now - window + dt.timedelta(minutes=2), times=MAX_FAILED_LOGINS)
    _fail(db, "locked-ended", now - dt.timedelta(hours=2), times=MAX_FAILED_LOGINS)
    for days in (400, 366, 364, 1):
        with db.session() as s:
            s.add(AuditEntry(at=now - dt.timedelta(days=days), username="x", action="login"))

    counts = apply_retention(db, RetentionSettings(days=90, audit_days=365), NOW)

    assert counts.login_failures == 3 and counts.audit_entries == 2
    assert counts == PurgeCounts(audit_entries=2, login_failures=3)
    assert _failure_rows(db) == {"guessed-just-now": 1, "locked-still": MAX_FAILED_LOGINS}
    with db.session() as s:
        kept = sorted((now - at).days for at in s.scalars(select(AuditEntry.at)))
    assert kept == [1, 364]
    assert apply_retention(db, RetentionSettings(), NOW) == PurgeCounts()  # nothing left


def test_failures_older_than_the_lock_window_start_the_count_afresh(db):
    """Whether or not pruning ran yet: the count does not depend on the job's timing."""
    start = NOW.replace(tzinfo=None)
    _fail(db, "clerk", start, times=MAX_FAILED_LOGINS - 1)
    _fail(db, "clerk", start + dt.timedelta(minutes=LOCK_MINUTES + 1))
    assert _failure_rows(db) == {"clerk": 1}
    _fail(db, "clerk", start + dt.timedelta(minutes=LOCK_MINUTES + 2), times=MAX_FAILED_LOGINS - 1)
    with pytest.raises(LoginError) as exc:  # the fifth in a row within the window locks
        authenticate(db, "clerk", "wrong-password", now=start + dt.timedelta(minutes=20))
    assert exc.value.locked


def test_a_database_from_before_the_failure_times_is_upgraded_and_pruned(db):
    """An older release made login_failures without last_failed_at: create_all adds it."""
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE login_failures DROP COLUMN last_failed_at"))
        conn.execute(text("INSERT INTO login_failures (username, count) VALUES ('old-release', 3)"))
    db.engine.dispose()  # forget cached table shapes
    db.create_all()
    assert _failure_rows(db) == {"old-release": 3}
    assert apply_retention(db, RetentionSettings(), NOW).login_failures == 1
    _fail(db, "new-release", NOW.replace(tzinfo=None))
    assert _failure_rows(db) == {"new-release": 1}
