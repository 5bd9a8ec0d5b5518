"""The audit log: who did what to the web app's data, when, with before/after summaries.

Logins (successful or not), logouts, FAQ edits, publishes, rollbacks, imports and user
changes are recorded so that a city can answer "who changed this answer, and when?".
Rows are only ever added, and deleted only when older than the retention period
(``RetentionSettings.audit_days``, by ``dashboards.retention``). ``record`` can join the
caller's transaction (pass ``session``) so that a change and its audit row are committed
together or not at all.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import DateTime, Integer, String, Text, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from dashboards.db import Base, Database

SUMMARY_MAX = 500
SNAPSHOT_MAX = 20_000  # before/after JSON is cut beyond this (it is a summary, not a backup)

ACTION_LABELS = {
    "login": "ログイン",
    "login_failed": "ログイン失敗",
    "logout": "ログアウト",
    "faq_create": "FAQ追加",
    "faq_update": "FAQ編集",
    "faq_delete": "FAQ削除",
    "faq_discard": "下書きの破棄",
    "faq_publish": "FAQ公開",
    "faq_rollback": "FAQ差し戻し",
    "faq_import": "FAQ取り込み",
    "user_create": "ユーザー追加",
    "user_update": "ユーザー変更",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    summary: Mapped[str] = mapped_column(String(SUMMARY_MAX), default="")
    before: Mapped[str | None] = mapped_column(Text, nullable=True)
    after: Mapped[str | None] = mapped_column(Text, nullable=True)
    client: Mapped[str] = mapped_column(String(64), default="")

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat() + "Z",
            "username": self.username,
            "action": self.action,
            "action_label": ACTION_LABELS.get(self.action, self.action),
            "target": self.target,
            "summary": self.summary,
            "before": json.loads(self.before) if self.before else None,
            "after": json.loads(self.after) if self.after else None,
            "client": self.client,
        }


def _dump(value: Any) -> str | None:
    if value is None:
        return None
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > SNAPSHOT_MAX:
        text = json.dumps({"truncated": text[:SNAPSHOT_MAX]}, ensure_ascii=False)
    return text


def record(
    db: Database | None,
    username: str,
    action: str,
    target: str = "",
    summary: str = "",
    before: Any = None,
    after: Any = None,
    client: str = "",
    session: Session | None = None,
) -> None:
    """Add one audit row; in ``session``'s transaction if given, else in its own."""
    row = AuditEntry(
        at=utcnow(),
        username=username[:64],
        action=action,
        target=target[:200],
        summary=summary[:SUMMARY_MAX],
        before=_dump(before),
        after=_dump(after),
        client=client[:64],
    )
    if session is not None:
        session.add(row)
        return
    if db is None:
        raise ValueError("record() needs a database or a session")
    with db.session() as s:
        s.add(row)


def delete_older_than(db: Database, cutoff: dt.datetime, batch_size: int = 1000) -> int:
    """Delete rows recorded before ``cutoff`` (naive UTC), in small transactions; how many."""
    deleted = 0
    while True:
        with db.session() as s:
            ids = list(
                s.scalars(select(AuditEntry.id).where(AuditEntry.at < cutoff).limit(batch_size))
            )
            if not ids:
                return deleted
            deleted += s.execute(delete(AuditEntry).where(AuditEntry.id.in_(ids))).rowcount


def query(
    db: Database,
    *,
    username: str | None = None,
    action: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Newest first; returns (rows, total matching)."""
    stmt = select(AuditEntry)
    count = select(func.count(AuditEntry.id))
    if username:
        stmt = stmt.where(AuditEntry.username == username)
        count = count.where(AuditEntry.username == username)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
        count = count.where(AuditEntry.action == action)
    stmt = stmt.order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    with db.session() as s:
        return [r.public() for r in s.scalars(stmt)], int(s.scalar(count) or 0)


def _show(value: Any) -> str:
    if value is None:
        return "（なし）"
    if isinstance(value, list):
        return "｜".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def changed_fields(
    before: Any, after: Any, labels: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """What a row's before/after snapshots differ in, field by field, for people to read.

    The audit page shows this instead of raw JSON, so that an administrator sees at a
    glance that an answer's text changed and from what to what.
    """
    labels = labels or {}
    if not isinstance(before, dict) and not isinstance(after, dict):
        return []
    old = before if isinstance(before, dict) else {}
    new = after if isinstance(after, dict) else {}
    rows = []
    for key in list(dict.fromkeys([*old, *new])):
        if old.get(key) == new.get(key):
            continue
        rows.append(
            {
                "field": key,
                "label": labels.get(key, key),
                "before": _show(old.get(key)) if key in old else "",
                "after": _show(new.get(key)) if key in new else "",
            }
        )
    return rows
