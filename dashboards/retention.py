"""Retention: call records older than ``RetentionSettings.days`` are deleted, and so are
audit rows older than ``audit_days`` and login-failure counts past the lock window.

Records of what residents said are personal data; a city keeps them only as long as its
rules allow. ``purge`` deletes whole calls (with their turns, transfers and errors) in
small transactions so that the recorder and the dashboards are never blocked for long;
``apply_retention`` adds the audit log and the login-failure counts (which guessing at
random user names would grow without bound); ``retention_job`` runs it daily inside the
service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select

from dashboards import audit
from dashboards.accounts import prune_login_failures
from dashboards.call_records import Call, CallError, Transfer, Turn
from dashboards.config import RetentionSettings
from dashboards.db import Database

log = logging.getLogger(__name__)

DAY_S = 24 * 3600.0


@dataclass
class PurgeCounts:
    """How many rows of each table a purge deleted."""

    calls: int = 0
    turns: int = 0
    transfers: int = 0
    errors: int = 0
    audit_entries: int = 0
    login_failures: int = 0

    @property
    def total(self) -> int:
        return (
            self.calls
            + self.turns
            + self.transfers
            + self.errors
            + self.audit_entries
            + self.login_failures
        )


def purge(
    db: Database, days: int, now: dt.datetime | None = None, batch_size: int = 500
) -> PurgeCounts:
    """Delete every call that started more than ``days`` days before ``now``, with its rows.

    Child rows are deleted explicitly rather than through ON DELETE CASCADE, so the counts
    are exact and nothing depends on the backend enforcing foreign keys.
    """
    if days < 1:
        raise ValueError(f"retention days must be at least 1, not {days}")
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    cutoff = now - dt.timedelta(days=days)
    counts = PurgeCounts()
    while True:
        with db.session() as session:
            ids = list(
                session.scalars(select(Call.id).where(Call.started_at < cutoff).limit(batch_size))
            )
            if not ids:
                break
            counts.turns += session.execute(delete(Turn).where(Turn.call_id.in_(ids))).rowcount
            counts.transfers += session.execute(
                delete(Transfer).where(Transfer.call_id.in_(ids))
            ).rowcount
            counts.errors += session.execute(
                delete(CallError).where(CallError.call_id.in_(ids))
            ).rowcount
            counts.calls += session.execute(delete(Call).where(Call.id.in_(ids))).rowcount
    return counts


def apply_retention(
    db: Database, settings: RetentionSettings, now: dt.datetime | None = None
) -> PurgeCounts:
    """Everything past its retention: old calls, old audit rows, stale login failures."""
    now = now or dt.datetime.now(dt.UTC)
    counts = purge(db, settings.days, now)
    naive_utc = now.astimezone(dt.UTC).replace(tzinfo=None)  # how those tables store time
    cutoff = naive_utc - dt.timedelta(days=settings.audit_days)
    counts.audit_entries = audit.delete_older_than(db, cutoff)
    counts.login_failures = prune_login_failures(db, naive_utc)
    return counts


async def retention_job(
    db: Database,
    settings: RetentionSettings,
    *,
    interval_s: float = DAY_S,
    first_delay_s: float = 60.0,
    on_purged: Callable[[PurgeCounts], None] | None = None,
) -> None:
    """Purge old records every ``interval_s`` (daily) until cancelled.

    Start it as a task in the service (``asyncio.create_task(retention_job(...))``) and
    cancel it on shutdown. The purge runs on a thread; a failure is logged and retried at
    the next interval, never ending the job.
    """
    await asyncio.sleep(first_delay_s)
    while True:
        try:
            counts = await asyncio.to_thread(apply_retention, db, settings)
        except Exception:
            log.exception("retention: purging records older than %d days failed", settings.days)
        else:
            if counts.calls:
                log.info(
                    "retention: deleted %d calls older than %d days "
                    "(%d turns, %d transfers, %d errors)",
                    counts.calls,
                    settings.days,
                    counts.turns,
                    counts.transfers,
                    counts.errors,
                )
            if counts.audit_entries or counts.login_failures:
                log.info(
                    "retention: deleted %d audit rows older than %d days, "
                    "%d stale login-failure counts",
                    counts.audit_entries,
                    settings.audit_days,
                    counts.login_failures,
                )
            if on_purged is not None:
                on_purged(counts)
        await asyncio.sleep(interval_s)
