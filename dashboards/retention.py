"""Retention: call records older than ``RetentionSettings.days`` are deleted.

Records of what residents said are personal data; a city keeps them only as long as its
rules allow. ``purge`` deletes whole calls (with their turns, transfers and errors) in
small transactions so that the recorder and the dashboards are never blocked for long;
``retention_job`` runs it daily inside the service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select

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

    @property
    def total(self) -> int:
        return self.calls + self.turns + self.transfers + self.errors


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
            counts = await asyncio.to_thread(purge, db, settings.days)
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
            if on_purged is not None:
                on_purged(counts)
        await asyncio.sleep(interval_s)
