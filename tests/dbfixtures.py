"""Database fixtures: the same tests against SQLite (a temporary file) and PostgreSQL.

Use in a test module with ``import dbfixtures`` and ``db = dbfixtures.db`` (and
``database_url``, ``postgres_url`` likewise: pytest finds fixtures among module names).
``db`` is a ``dashboards.db.Database`` with every table created and nothing in it;
``database_url`` alone is for tests that open several ``Database`` objects on one store.

PostgreSQL is the local server (``$VOICEBOT_TEST_POSTGRES``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, trust auth). Each test session
creates its own database ``voicebot_test_<random>`` and drops it at the end, so parallel
sessions never see each other's rows. If the server cannot be reached the PostgreSQL
variants are skipped with the reason, unless ``VOICEBOT_REQUIRE_POSTGRES=1`` (then they fail).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dashboards.db import Database
from voicebot.events import (
    BotSpeechStarted,
    CallEnded,
    CallerSpeechEnded,
    CallEvent,
    CallStarted,
    IntentDecided,
    Recognized,
    TransferAnswered,
    TransferFailed,
    TransferRequested,
)

ADMIN_URL = os.environ.get(
    "VOICEBOT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session (dropped afterwards)."""
    name = f"voicebot_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        reason = f"PostgreSQL not reachable at {ADMIN_URL}: {exc.__class__.__name__}: {exc}"
        if os.environ.get("VOICEBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty store with every table: a SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'voicebot.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:  # whatever an earlier test left behind
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    setup = Database(url)
    setup.create_all()
    setup.dispose()
    yield url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A ``Database`` on ``database_url``, disposed after the test."""
    database = Database(database_url)
    yield database
    database.dispose()


# -- call records with known values -------------------------------------------------------
@dataclass
class ScriptedTurn:
    """One caller turn of a scripted call (see ``scripted_call``)."""

    text: str
    action: str = "answer"
    faq_id: str | None = None
    score: float = 0.9
    latency_ms: float | None = 500.0
    candidates: list[dict] | None = None


def scripted_call(
    call_id: str,
    start: dt.datetime,
    turns: list[ScriptedTurn] | None = None,
    *,
    outcome: str | None = "completed",
    duration_s: float = 60.0,
    transfer: tuple[str, bool] | None = None,  # (reason, answered)
    transport: str = "sip",
) -> list[CallEvent]:
    """The events a call with these turns would emit, at known wall-clock times.

    Report and retention tests feed them through the real ``CallRecorder``, so the rows
    are exactly what a live call produces. ``outcome=None`` leaves the call in progress.
    """
    t0 = start.timestamp()

    def at(ms: float) -> dict:
        return {"call_id": call_id, "t_ms": ms, "wall_time": t0 + ms / 1000.0}

    turns = turns or []
    events: list[CallEvent] = [CallStarted(**at(0.0), transport=transport)]
    for i, turn in enumerate(turns):
        t = 5000.0 * (i + 1)
        events.append(CallerSpeechEnded(**at(t), speech_start_ms=t - 1500, last_speech_ms=t - 300))
        events.append(Recognized(**at(t), text=turn.text, final=True, processing_ms=150.0))
        candidates = turn.candidates
        if candidates is None:
            candidates = [{"faq_id": turn.faq_id, "score": turn.score}] if turn.faq_id else []
        events.append(
            IntentDecided(
                **at(t + 20),
                text=turn.text,
                faq_id=turn.faq_id,
                score=turn.score,
                action=turn.action,
                candidates=candidates,
            )
        )
        if turn.latency_ms is not None:
            events.append(
                BotSpeechStarted(
                    **at(t - 300 + turn.latency_ms),
                    text=f"reply to {turn.text}",
                    kind=turn.action,
                    latency_ms=turn.latency_ms,
                )
            )
    end_ms = duration_s * 1000.0
    if transfer is not None:
        reason, answered = transfer
        summary = {"reason": reason, "turns": [{"heard": t.text} for t in turns]}
        events.append(TransferRequested(**at(end_ms - 10), reason=reason, summary=summary))
        if answered:
            events.append(TransferAnswered(**at(end_ms - 5), target="console"))
        else:
            events.append(TransferFailed(**at(end_ms - 5), reason="nobody answered"))
    if outcome is not None:
        events.append(CallEnded(**at(end_ms), outcome=outcome, duration_ms=end_ms))
    return events


def record(db: Database, *calls: list[CallEvent]) -> None:
    """Write scripted calls through a real ``CallRecorder``."""
    from dashboards.recorder import CallRecorder

    recorder = CallRecorder(db)
    for events in calls:
        for event in events:
            recorder.emit(event)
    left = recorder.close()
    if left:
        raise RuntimeError(f"{left} events were not written")
