"""Web-app users, their passwords and their login sessions.

Passwords are stored as argon2id hashes only. A login creates a server-side session
row; the browser holds only a random token (HttpOnly cookie) whose sha256 is the row's
key, so a leaked database does not hand out live sessions. Each session carries its own
CSRF token, which pages embed and unsafe requests must send back.

Repeated failed logins lock the account for a while, so passwords cannot be guessed
online at speed; the lock is per user name, known or not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    and_,
    case,
    delete,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from dashboards.db import Base, Database

log = logging.getLogger(__name__)

ROLES = ("admin", "operator", "staff", "viewer")
ROLE_LABELS = {
    "admin": "管理者",
    "operator": "運用担当",
    "staff": "窓口職員",
    "viewer": "閲覧のみ",
}
MAX_FAILED_LOGINS = 5  # failures in a row before the account is locked
LOCK_MINUTES = 15
MIN_PASSWORD_LENGTH = 8
USERNAME_MAX = 64

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class User(Base):
    """A person who can log in to the web app."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True, index=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    def public(self) -> dict:
        """What the API shows about a user (never the hash)."""
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
            "active": self.active,
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
        }


class LoginSession(Base):
    """One logged-in browser. Keyed by the sha256 of the cookie token."""

    __tablename__ = "login_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class LoginFailures(Base):
    """Failed logins in a row per user name (known or not), for locking.

    Any name can be tried, so rows are pruned (``prune_login_failures``) once their last
    failure is older than the lock window and no lock holds.
    """

    __tablename__ = "login_failures"

    username: Mapped[str] = mapped_column(String(USERNAME_MAX), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # None on rows from before this column: treated as long ago.
    last_failed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class AccountError(ValueError):
    """A user cannot be created or changed; the message is Japanese, for the UI."""


LOCKED_MESSAGE = (
    "ログインの失敗が続いたため、このアカウントは一時的にロックされています。"
    f"{LOCK_MINUTES}分ほどたってから、もう一度お試しください。"
)
WRONG_MESSAGE = "ユーザー名またはパスワードが正しくありません。"


class LoginError(Exception):
    """A login was refused. ``locked`` tells a lock from a wrong password."""

    def __init__(self, message: str, locked: bool = False):
        super().__init__(message)
        self.locked = locked


@dataclass(frozen=True)
class SessionInfo:
    """A valid session: who, and the CSRF token their pages carry."""

    user: User
    csrf_token: str
    expires_at: dt.datetime


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True if ``password`` matches; never raises for a wrong or malformed hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_new_user(username: str, role: str, password: str) -> None:
    if not username or len(username) > USERNAME_MAX or not username.isprintable():
        raise AccountError(f"ユーザー名は1〜{USERNAME_MAX}文字で入力してください。")
    if any(c.isspace() for c in username):
        raise AccountError("ユーザー名に空白は使えません。")
    _check_role(role)
    _check_password(password)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"権限は {', '.join(ROLES)} のいずれかを指定してください。")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"パスワードは{MIN_PASSWORD_LENGTH}文字以上にしてください。")


def create_user(
    db: Database, username: str, role: str, password: str, display_name: str = ""
) -> User:
    """Add a user (``voicebot users add`` and the admin page). Raises AccountError."""
    username = username.strip()
    _check_new_user(username, role, password)
    with db.session() as s:
        if s.scalar(select(User).where(User.username == username)) is not None:
            raise AccountError(f"ユーザー「{username}」はすでに登録されています。")
        user = User(
            username=username,
            display_name=display_name.strip() or username,
            role=role,
            password_hash=hash_password(password),
            active=True,
            created_at=utcnow(),
        )
        s.add(user)
    return user


def get_user(db: Database, username: str) -> User | None:
    with db.session() as s:
        return s.scalar(select(User).where(User.username == username))


def list_users(db: Database) -> list[User]:
    with db.session() as s:
        return list(s.scalars(select(User).order_by(User.username)))


def update_user(
    db: Database,
    username: str,
    *,
    role: str | None = None,
    active: bool | None = None,
    display_name: str | None = None,
    password: str | None = None,
) -> tuple[dict, dict]:
    """Change a user; returns (before, after) public views for the audit log.

    Deactivating a user or changing the password ends their sessions.
    """
    with db.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise AccountError(f"ユーザー「{username}」は見つかりません。")
        before = user.public()
        if role is not None:
            _check_role(role)
            user.role = role
        if display_name is not None:
            user.display_name = display_name.strip() or user.username
        if active is not None:
            user.active = active
        if password is not None:
            _check_password(password)
            user.password_hash = hash_password(password)
        if active is False or password is not None:
            s.execute(delete(LoginSession).where(LoginSession.user_id == user.id))
        after = user.public()
        if password is not None:
            after["password"] = "変更"
    return before, after


def _count_attempt(db: Database, username: str, now: dt.datetime) -> int:
    """Count one login attempt for ``username`` in a single atomic statement; its number.

    An upsert with RETURNING (SQLite 3.35+ and PostgreSQL alike): concurrent attempts each
    get their own number, so a burst cannot slip past the limit between a read and a write
    and never collides on the primary key. The attempt that reaches the limit also sets
    the lock time, so a crash between counting and checking cannot leave a count without
    a lock that would never expire. A lock that has run out starts the count afresh, and
    so does a last failure older than the lock window (the rows pruning would delete).
    """
    table = LoginFailures.__table__
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    lock_over = and_(table.c.locked_until.is_not(None), table.c.locked_until <= now)
    stale = or_(lock_over, and_(table.c.locked_until.is_(None), _failures_aged(table, now)))
    until = literal(now + dt.timedelta(minutes=LOCK_MINUTES), DateTime())
    first_lock = until if MAX_FAILED_LOGINS <= 1 else None
    stmt = (
        insert(table)
        .values(username=username, count=1, locked_until=first_lock, last_failed_at=now)
        .on_conflict_do_update(
            index_elements=[table.c.username],
            set_={
                "count": case((stale, 1), else_=table.c.count + 1),
                "last_failed_at": literal(now, DateTime()),
                "locked_until": case(
                    (stale, first_lock if first_lock is not None else literal(None, DateTime())),
                    (
                        table.c.count + 1 >= MAX_FAILED_LOGINS,
                        func.coalesce(table.c.locked_until, until),
                    ),
                    else_=table.c.locked_until,
                ),
            },
        )
        .returning(table.c.count)
    )
    with db.session() as s:
        return int(s.execute(stmt).scalar_one())


def _failures_aged(table: Any, now: dt.datetime) -> Any:
    """SQL: the row's last failure is older than the lock window (or not recorded)."""
    window = dt.timedelta(minutes=LOCK_MINUTES)
    return or_(table.c.last_failed_at.is_(None), table.c.last_failed_at <= now - window)


def prune_login_failures(db: Database, now: dt.datetime | None = None) -> int:
    """Delete failure counts that no longer matter; how many rows went.

    A row matters while its lock holds or its last failure is within the lock window
    (``_count_attempt`` starts afresh after either); every other row is dead weight that
    guessing at random user names would otherwise pile up without bound.
    """
    now = now or utcnow()
    table = LoginFailures.__table__
    unlocked = or_(table.c.locked_until.is_(None), table.c.locked_until <= now)
    with db.session() as s:
        stmt = delete(LoginFailures).where(unlocked, _failures_aged(table, now))
        return int(s.execute(stmt).rowcount or 0)


LOGGED_NAME_CHARS = 40  # of a user name in a log line, escapes included


def _name_for_log(name: str) -> str:
    """A user name as typed at the login form, fit for a log line: quoted, anything
    unprintable escaped (no forged lines, no terminal escapes, no bidi overrides) and at
    most ``LOGGED_NAME_CHARS`` characters of it, with a note of how much was cut."""
    out: list[str] = []
    used = 0
    for i, ch in enumerate(name):
        if ch in '\\"':
            piece = "\\" + ch
        elif ch.isprintable():
            piece = ch
        else:
            piece = ch.encode("unicode_escape").decode("ascii")
        if used + len(piece) > LOGGED_NAME_CHARS:
            return f'"{"".join(out)}" (+{len(name) - i} more characters)'
        out.append(piece)
        used += len(piece)
    return f'"{"".join(out)}"'


def authenticate(
    db: Database, username: str, password: str, now: dt.datetime | None = None
) -> User:
    """The user if the password is right; LoginError otherwise.

    Every attempt is counted in the database before the hash is checked, and only the
    first ``MAX_FAILED_LOGINS`` attempts in a row are checked at all: a burst of
    concurrent guesses is cut off at the limit (no argon2 work for the rest) and leaves
    the account locked, and a right password arriving after the limit is refused like
    any other until the lock runs out. The hash is verified even for unknown names so
    that timing does not tell which user names exist.
    """
    now = now or utcnow()
    username = username.strip()[:USERNAME_MAX]
    attempt = _count_attempt(db, username, now)
    if attempt > MAX_FAILED_LOGINS:
        raise LoginError(LOCKED_MESSAGE, locked=True)
    user = get_user(db, username)
    ok = verify_password(user.password_hash if user else _DUMMY_HASH, password)
    if ok and user is not None and user.active:
        with db.session() as s:
            # Failures in a row end with a success; attempts made meanwhile by others
            # (a higher count) still stand, and so does the lock they may have reached.
            s.execute(
                delete(LoginFailures).where(
                    LoginFailures.username == username, LoginFailures.count == attempt
                )
            )
            row = s.get(User, user.id)
            if row is None:
                raise LoginError(WRONG_MESSAGE)
            row.last_login_at = now
            if _hasher.check_needs_rehash(row.password_hash):
                row.password_hash = hash_password(password)
            user = row
        return user
    if attempt >= MAX_FAILED_LOGINS:
        log.warning("login: %s locked after %d failures", _name_for_log(username), attempt)
    raise LoginError(WRONG_MESSAGE)


_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def create_session(
    db: Database, user: User, hours: float, now: dt.datetime | None = None
) -> tuple[str, SessionInfo]:
    """A new session for ``user``: (cookie token, session info)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + dt.timedelta(hours=hours)
    with db.session() as s:
        s.add(
            LoginSession(
                token_hash=token_hash(token),
                user_id=user.id,
                csrf_token=csrf,
                created_at=now,
                expires_at=expires,
            )
        )
        # Expired sessions are dead weight; clear them while we are here.
        s.execute(delete(LoginSession).where(LoginSession.expires_at <= now))
    return token, SessionInfo(user=user, csrf_token=csrf, expires_at=expires)


def lookup_session(db: Database, token: str, now: dt.datetime | None = None) -> SessionInfo | None:
    """The live session of ``token`` with an active user, or None."""
    if not token:
        return None
    now = now or utcnow()
    with db.session() as s:
        row = s.get(LoginSession, token_hash(token))
        if row is None:
            return None
        if row.expires_at <= now:
            s.delete(row)
            return None
        user = s.get(User, row.user_id)
        if user is None or not user.active:
            return None
        return SessionInfo(user=user, csrf_token=row.csrf_token, expires_at=row.expires_at)


def end_session(db: Database, token: str) -> None:
    with db.session() as s:
        s.execute(delete(LoginSession).where(LoginSession.token_hash == token_hash(token)))


def ensure_initial_admin(db: Database, password: str | None = None) -> str | None:
    """On first start (no users at all) create 'admin'.

    Returns the generated password (to be logged once) when none was configured, else
    None. Does nothing when any user exists.
    """
    with db.session() as s:
        if s.scalar(select(User.id).limit(1)) is not None:
            return None
    generated = password is None
    password = password or secrets.token_urlsafe(12)
    create_user(db, "admin", "admin", password, display_name="管理者")
    return password if generated else None
