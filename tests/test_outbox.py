"""The durable MQTT outbox: order, deletion after acknowledgement, restarts, the bound."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from dashboards.outbox import Outbox, OutboxError, OutboxFull


def test_messages_come_back_oldest_first_until_deleted(tmp_path):
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        ids = [outbox.append(f"t/{i}", f"payload {i}".encode(), 1) for i in range(5)]
        assert ids == sorted(ids)
        assert len(outbox) == 5
        first = outbox.peek(3)
        assert [m.topic for m in first] == ["t/0", "t/1", "t/2"]
        assert first[0].payload == b"payload 0" and first[0].qos == 1
        outbox.delete([m.id for m in first[:2]])
        assert [m.topic for m in outbox.peek(10)] == ["t/2", "t/3", "t/4"]
        assert [m.topic for m in outbox.peek(10, after_id=first[2].id)] == ["t/3", "t/4"]
        assert len(outbox) == 3


def test_what_is_left_survives_a_restart_in_order(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path)
    outbox.append_many([(f"t/{i}", "日本語のペイロード", 1) for i in range(100)])
    outbox.delete([m.id for m in outbox.peek(40)])
    outbox.close()
    reopened = Outbox(path)
    assert len(reopened) == 60
    left = reopened.peek(1000)
    assert [m.topic for m in left] == [f"t/{i}" for i in range(40, 100)]
    assert left[0].payload.decode() == "日本語のペイロード"
    # New messages go after the old ones.
    reopened.append("t/new", b"x", 1)
    assert reopened.peek(1000)[-1].topic == "t/new"
    reopened.close()


def test_uses_wal(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    Outbox(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_full_outbox_refuses_loudly_and_keeps_what_fits(tmp_path, caplog):
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_messages=10)
    with caplog.at_level(logging.WARNING, logger="dashboards.outbox"):
        outbox.append_many([("t", b"x", 1)] * 8)
        assert any("80% full" in r.getMessage() for r in caplog.records)
        with pytest.raises(OutboxFull) as excinfo:
            outbox.append_many([("t/more", b"y", 1)] * 5)
    assert excinfo.value.rejected == 3
    assert len(outbox) == 10
    assert [m.topic for m in outbox.peek(100)][-2:] == ["t/more", "t/more"]
    assert outbox.refused == 3
    assert any(r.levelno == logging.ERROR and "full" in r.getMessage() for r in caplog.records)
    # After delivery there is room again.
    outbox.delete([m.id for m in outbox.peek(5)])
    outbox.append("t/again", b"z", 1)
    assert len(outbox) == 6
    outbox.close()


def test_two_processes_sharing_the_file_count_each_others_messages(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    a = Outbox(path, max_messages=5)
    b = Outbox(path, max_messages=5)
    a.append_many([("a", b"1", 1)] * 3)
    with pytest.raises(OutboxFull):
        b.append_many([("b", b"2", 1)] * 3)
    assert len(b) == 5
    a.close()
    b.close()


def test_a_file_that_is_not_an_outbox_gives_a_clear_error(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="cannot open the MQTT outbox"):
        Outbox(path)
