"""The call recorder on real calls, against SQLite and PostgreSQL.

The calls are real: the bot (Whisper, the matcher, the dialogue, pyttsx3 for its voice as
in test_call.py) talks to a recorded caller track on a virtual clock, and the recorder is
one of the call's event sinks, exactly as in the service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import dbfixtures
import pytest
from sqlalchemy import select, text
from test_call import OPEN, caller_track

from dashboards.call_records import Call, CallError, Transfer, Turn, mark_abandoned
from dashboards.db import Database
from dashboards.recorder import RECORDED, CallRecorder
from voicebot.bot import Bot
from voicebot.clock import VirtualClock
from voicebot.config import Settings
from voicebot.events import (
    BotSpeechStarted,
    CallEnded,
    CallerSpeechEnded,
    CallEvent,
    CallStarted,
    ComponentFailed,
    EventFanout,
    EventRecorder,
    IntentDecided,
    Recognized,
    TransferRequested,
)
from voicebot.recorded_call import RecordedCaller

# Recognition is charged a fixed time on the virtual clock, as on a quiet 2-core machine,
# so that these calls unfold the same way however busy the test machine is.
RECOGNITION_MS = 400.0

# The same tests on SQLite and PostgreSQL (fixtures from dbfixtures).
postgres_url = dbfixtures.postgres_url
database_url = dbfixtures.database_url
db = dbfixtures.db

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def bot(tmp_path_factory) -> Bot:
    settings = Settings()
    settings.tts.engine = "pyttsx3"
    settings.tts.cache_dir = tmp_path_factory.mktemp("speech-cache")
    bot = Bot(settings)
    asyncio.run(bot.prepare(rates=(8000,)))
    return bot


def run_call(bot: Bot, recorder: CallRecorder, *parts: str | float, **caller_kw) -> EventRecorder:
    """One call with the recorder among its sinks; returns every event of the call."""
    clock = VirtualClock(work_ms=RECOGNITION_MS)
    caller = RecordedCaller(caller_track(*parts), clock, **caller_kw)
    events = EventRecorder()
    session = bot.session(caller, clock, EventFanout(caller, events, recorder), now=lambda: OPEN)
    asyncio.run(session.run())
    return events


@pytest.fixture(scope="module")
def call_events(bot) -> list[CallEvent]:
    """The events of one real call (answer, then a transfer that fails), for replaying."""
    recorder = EventRecorder()
    clock = VirtualClock(work_ms=RECOGNITION_MS)
    audio = caller_track("納付書を再発行してもらえますか", 4.0, "担当の方と直接話したいです", 3.0)
    caller = RecordedCaller(audio, clock, transfer_ok=False)
    session = bot.session(caller, clock, EventFanout(caller, recorder), now=lambda: OPEN)
    asyncio.run(session.run())
    return recorder.events


def rows(db: Database, model, **where):
    with db.session() as s:
        query = select(model).filter_by(**where)
        order = getattr(model, "seq", None) or model.id
        return list(s.scalars(query.order_by(order)))


def test_records_a_transferred_call(bot, db):
    recorder = CallRecorder(db, site="kita")
    events = run_call(
        bot, recorder, "納付書を再発行してもらえますか", 4.0, "担当の方と直接話したいです", 3.0
    )
    assert recorder.flush()
    call_id = events.events[0].call_id
    [call] = rows(db, Call, id=call_id)
    ended = events.of_type(CallEnded)[0]
    assert call.outcome == "transferred"
    assert call.transport == "recording"
    assert call.site == "kita"
    assert call.duration_ms == pytest.approx(ended.duration_ms)
    assert call.started_at.tzinfo is not None
    assert call.started_at <= call.ended_at
    assert call.turn_count == 2
    assert call.answered_turns == 1
    assert call.transfer_reason == "caller_request"

    turns = rows(db, Turn, call_id=call_id)
    decided = events.of_type(IntentDecided)
    assert [t.seq for t in turns] == [1, 2]
    assert [t.text for t in turns] == [d.text for d in decided]
    assert [t.faq_id for t in turns] == ["payment.lost-notice", None]
    assert [t.action for t in turns] == ["answer", "transfer"]
    assert turns[0].candidates == decided[0].candidates
    assert turns[0].score == pytest.approx(decided[0].score)
    ends = events.of_type(CallerSpeechEnded)
    assert [t.speech_end_ms for t in turns] == [e.last_speech_ms for e in ends]
    replies = [
        e
        for e in events.of_type(BotSpeechStarted)
        if e.latency_ms is not None and e.kind != "filler"  # 「はい。」 is no reply
    ]
    assert [t.latency_ms for t in turns] == [r.latency_ms for r in replies]
    assert [t.reply_kind for t in turns] == ["answer", "transfer"]
    assert turns[0].reply_text.startswith(bot.understanding.faq.answer_text("payment.lost-notice"))
    assert all(t.final and t.asr_ms > 0 for t in turns)

    [transfer] = rows(db, Transfer, call_id=call_id)
    assert transfer.status == "answered"
    assert transfer.reason == "caller_request"
    assert transfer.summary["turns"][0]["faq_id"] == "payment.lost-notice"
    assert recorder.close() == 0


def test_records_a_failed_transfer_and_the_call_going_on(bot, db):
    recorder = CallRecorder(db)
    events = run_call(
        bot,
        recorder,
        "納付書を再発行してもらえますか",
        4.0,
        "担当の方と直接話したいです",
        3.0,
        transfer_ok=False,
    )
    assert recorder.close() == 0
    call_id = events.events[0].call_id
    [call] = rows(db, Call, id=call_id)
    assert call.outcome == "hung_up"  # the bot apologised, offered help, the caller hung up
    assert call.transfer_reason == "caller_request"
    [transfer] = rows(db, Transfer, call_id=call_id)
    assert transfer.status == "failed"
    assert "refused" in transfer.failure_reason
    assert transfer.resolved_at >= transfer.requested_at
    # The apology after the failed transfer is no caller turn's reply.
    turns = rows(db, Turn, call_id=call_id)
    assert [t.reply_kind for t in turns] == ["answer", "transfer"]


def test_component_failures_are_recorded(db):
    recorder = CallRecorder(db)
    recorder.emit(CallStarted(call_id="c-err", t_ms=0.0, transport="sip", caller="0312345678"))
    recorder.emit(ComponentFailed(call_id="c-err", t_ms=900.0, component="recognizer", error="x"))
    recorder.emit(CallEnded(call_id="c-err", t_ms=1000.0, outcome="transferred", duration_ms=1e3))
    assert recorder.close() == 0
    [error] = rows(db, CallError, call_id="c-err")
    assert (error.component, error.error) == ("recognizer", "x")
    assert rows(db, Call, id="c-err")[0].error_count == 1


def test_rows_are_on_disk_before_the_call_ends_and_survive_a_crash(call_events, database_url):
    """A process that dies mid-call (no close, no exit handlers) leaves what was said."""
    half = [e for e in call_events if not isinstance(e, CallEnded | TransferRequested)][:8]
    assert any(isinstance(e, IntentDecided) for e in half)
    payload = [(type(e).__name__, e.to_dict()) for e in half]
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS.parent)!r})
        from voicebot import events as ev
        from dashboards.db import Database
        from dashboards.recorder import RECORDED, CallRecorder
        recorder = CallRecorder(Database({database_url!r}))
        for kind, data in {payload!r}:
            data = {{k: v for k, v in data.items() if k not in ("event", "schema")}}
            recorder.emit(getattr(ev, kind)(**data))
        assert recorder.flush()
        import os
        os._exit(3)  # a crash: nothing after this runs
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr

    fresh = Database(database_url)
    try:
        call_id = half[0].call_id
        [call] = rows(fresh, Call, id=call_id)
        assert call.outcome is None  # still in progress as far as the records know
        [turn] = rows(fresh, Turn, call_id=call_id)
        said = next(e for e in half if isinstance(e, Recognized))
        assert turn.text == said.text
        assert turn.faq_id == "payment.lost-notice"
        # At start-up, the service closes calls that never ended.
        later = call.started_at + dt.timedelta(hours=3)
        assert mark_abandoned(fresh, dt.timedelta(hours=2), now=later) == 1
        assert rows(fresh, Call, id=call_id)[0].outcome == "error"
        assert mark_abandoned(fresh, dt.timedelta(hours=2), now=later) == 0
    finally:
        fresh.dispose()


def test_database_errors_never_reach_the_call_and_nothing_is_lost(call_events, db):
    """The turns table disappears mid-call (a real DB error); events wait until it is back."""
    recorder = CallRecorder(db, retry_delays_s=(0.01,), retry_interval_s=0.05)
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE call_turns RENAME TO call_turns_away"))
    for event in call_events:
        recorder.emit(event)  # must neither raise nor block
    assert not recorder.flush(timeout=5)
    assert recorder.unwritten == sum(isinstance(e, RECORDED) for e in call_events)
    assert recorder.failures >= 2
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE call_turns_away RENAME TO call_turns"))
    assert recorder.flush(timeout=10)
    assert recorder.dropped == 0
    call_id = call_events[0].call_id
    [call] = rows(db, Call, id=call_id)
    assert call.outcome == "hung_up"
    assert [t.action for t in rows(db, Turn, call_id=call_id)] == ["answer", "transfer"]
    assert recorder.close() == 0


def test_postgres_connections_killed_mid_call(call_events, db):
    if not db.url.startswith("postgresql"):
        pytest.skip("killing server connections is a PostgreSQL test")
    recorder = CallRecorder(db, retry_delays_s=(0.05, 0.2), retry_interval_s=0.1)
    for event in call_events[:5]:
        recorder.emit(event)
    assert recorder.flush()
    admin = Database(db.url)
    with admin.engine.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    admin.dispose()
    assert killed >= 1
    for event in call_events[5:]:
        recorder.emit(event)
    assert recorder.close() == 0
    assert rows(db, Call, id=call_events[0].call_id)[0].turn_count == 2


def test_a_refused_event_is_dropped_without_stopping_other_calls(db):
    recorder = CallRecorder(db, retry_delays_s=())
    recorder.emit(CallStarted(call_id="bad", t_ms=0.0, transport="sip"))
    recorder.emit(
        IntentDecided(
            call_id="bad", t_ms=5.0, text="x", faq_id=None, score=0.1, action="reprompt",
            candidates=[{"faq_id": {1, 2}}],  # a set: not JSON, refused whatever happens
        )
    )  # fmt: skip
    recorder.emit(CallStarted(call_id="good", t_ms=0.0, transport="sip"))
    recorder.emit(CallEnded(call_id="good", t_ms=9.0, outcome="completed", duration_ms=9.0))
    assert recorder.close() == 0
    assert recorder.dropped == 1
    assert rows(db, Call, id="good")[0].outcome == "completed"
    assert rows(db, Call, id="bad")[0].turn_count == 0


def test_emit_after_close_is_harmless(db):
    recorder = CallRecorder(db)
    assert recorder.close() == 0
    recorder.emit(CallStarted(call_id="late", t_ms=0.0, transport="sip"))
    assert rows(db, Call, id="late") == []


def test_caller_text_is_masked_before_it_is_stored(call_events, db):
    def mask(text: str) -> str:  # every character: whatever the recogniser made of it
        return "＊" * len(text)

    recorder = CallRecorder(db, mask=mask)
    first = call_events[0]
    assert isinstance(first, CallStarted)
    recorder.emit(CallStarted(call_id=first.call_id, t_ms=0.0, transport="sip", caller="納付 090"))
    for event in call_events[1:]:
        recorder.emit(event)
    assert recorder.close() == 0
    [call] = rows(db, Call, id=first.call_id)
    assert call.caller == "＊" * len("納付 090")
    turn = rows(db, Turn, call_id=first.call_id)[0]
    assert turn.text and set(turn.text) == {"＊"}
    assert "納付書" in turn.reply_text  # the bot's own words are not personal data
    [transfer] = rows(db, Transfer, call_id=first.call_id)
    heard = transfer.summary["turns"][0]["heard"]
    assert heard and set(heard) == {"＊"}


def test_default_masker_is_the_masking_module(db):
    from privacy.masking import mask_text

    recorder = CallRecorder(db)
    said = "電話番号は090-1234-5678です"
    recorder.emit(Recognized(call_id="m", t_ms=1.0, text=said, final=True))
    assert recorder.close() == 0
    assert rows(db, Turn, call_id="m")[0].text == mask_text(said)


def test_close_stops_the_writer_thread(db):
    recorder = CallRecorder(db)
    assert recorder.close() == 0
    assert not recorder._thread.is_alive()
