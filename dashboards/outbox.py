"""A durable outbox of MQTT messages: written before sending, deleted after PUBACK.

Call events must reach the broker even when it is down for a while or this process is
restarted in between, and in the order they happened. Every message is therefore first
appended to a small SQLite file (WAL mode: an append is one short transaction), sent
from there oldest first, and deleted only once the broker has acknowledged it. What is
left when the process stops is sent by the next one.

Several processes of a site (``voicebot serve``, ``voicebot call``) may share the file;
each then also sends what the others left, which at worst repeats a message (receivers
drop repeats by call, event and time).

The file is bounded: at ``max_messages`` further appends are refused with
``OutboxFull`` and an error in the log, never dropped silently; a warning comes first
when the outbox is 80 % full.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGES = 100_000
WARN_FRACTION = 0.8


class OutboxError(RuntimeError):
    """The outbox file cannot be used (not an outbox, unreadable, disk full)."""


class OutboxFull(OutboxError):
    """The outbox holds ``max_messages``; ``rejected`` messages were not stored."""

    def __init__(self, path: Path, max_messages: int, rejected: int):
        super().__init__(
            f"{path}: outbox full ({max_messages} messages waiting for the broker); "
            f"{rejected} message(s) refused"
        )
        self.rejected = rejected


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    topic: str
    payload: bytes
    qos: int


class Outbox:
    """Messages waiting for the broker, oldest first. Thread-safe; every call blocks on
    SQLite briefly, so async code calls it through ``asyncio.to_thread``."""

    def __init__(self, path: Path, *, max_messages: int = DEFAULT_MAX_MESSAGES):
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.path = Path(path)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._warned = False
        self._last_full_log = 0.0
        self.refused = 0  # messages refused because the outbox was full, since start
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, timeout=30, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " topic TEXT NOT NULL,"
                " payload BLOB NOT NULL,"
                " qos INTEGER NOT NULL,"
                " created REAL NOT NULL)"
            )
            (self._count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"{self.path}: cannot open the MQTT outbox: {exc}") from exc
        if self._count:
            log.info("outbox %s: %d message(s) from before wait for the broker", path, self._count)

    def __len__(self) -> int:
        return self._count

    def append(self, topic: str, payload: bytes | str, qos: int = 1) -> int:
        """Store one message; returns its id (ids increase in append order)."""
        return self.append_many([(topic, payload, qos)])[0]

    def append_many(self, messages: Iterable[tuple[str, bytes | str, int]]) -> list[int]:
        """Store messages in one transaction, in order; returns their ids.

        If the outbox fills up, the messages that fit are stored and ``OutboxFull`` is
        raised for the rest (their number in ``rejected``).
        """
        rows = [
            (topic, payload.encode("utf-8") if isinstance(payload, str) else payload, qos)
            for topic, payload, qos in messages
        ]
        ids: list[int] = []
        with self._lock:
            now = time.time()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                # Counted afresh: other processes (voicebot call, serve) may share the file.
                (self._count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
                room = max(self.max_messages - self._count, 0)
                fitting, rejected = rows[:room], len(rows) - room
                for topic, payload, qos in fitting:
                    cur = self._db.execute(
                        "INSERT INTO outbox (topic, payload, qos, created) VALUES (?, ?, ?, ?)",
                        (topic, payload, qos, now),
                    )
                    ids.append(int(cur.lastrowid or 0))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"{self.path}: cannot store MQTT messages: {exc}") from exc
            self._count += len(fitting)
            self._warn_if_filling()
            if rejected > 0:
                self.refused += rejected
                self._log_full(rejected)
                raise OutboxFull(self.path, self.max_messages, rejected)
        return ids

    def peek(self, limit: int = 100, after_id: int = 0) -> list[OutboxMessage]:
        """Up to ``limit`` of the oldest messages (with id > ``after_id``), oldest first."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT id, topic, payload, qos FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                    (after_id, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: cannot read MQTT messages: {exc}") from exc
        return [OutboxMessage(int(i), t, bytes(p), int(q)) for i, t, p, q in rows]

    def delete(self, ids: Sequence[int]) -> None:
        """Forget messages the broker has acknowledged."""
        if not ids:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                deleted = 0
                for start in range(0, len(ids), 500):
                    chunk = list(ids[start : start + 500])
                    marks = ",".join("?" * len(chunk))
                    cur = self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
                    deleted += cur.rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"{self.path}: cannot delete sent messages: {exc}") from exc
            self._count -= deleted
            if self._count < self.max_messages * WARN_FRACTION:
                self._warned = False

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # nothing to roll back: BEGIN failed
            self._db.execute("ROLLBACK")

    def _warn_if_filling(self) -> None:
        if not self._warned and self._count >= self.max_messages * WARN_FRACTION:
            self._warned = True
            log.warning(
                "MQTT outbox %s is %d%% full (%d of %d messages): is the broker reachable?",
                self.path,
                100 * self._count // self.max_messages,
                self._count,
                self.max_messages,
            )

    def _log_full(self, rejected: int) -> None:
        now = time.monotonic()
        if now - self._last_full_log >= 10.0:
            self._last_full_log = now
            log.error(
                "MQTT outbox %s is full (%d messages): %d event message(s) refused, %d since "
                "start: these events will not reach MQTT subscribers. Check the broker.",
                self.path,
                self.max_messages,
                rejected,
                self.refused,
            )
