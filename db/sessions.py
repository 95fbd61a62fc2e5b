"""Browser sessions for /review: opened at login, checked against the user's current state on every use.

A session is valid while its user exists and is enabled, the password is the one it was opened with,
it was used within the idle limit, and it is younger than the absolute limit. Only the SHA-256 of the
token is stored (a copy of the database hands out no live session).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update

from db.engine import Database
from db.schema import User, WebSession, as_utc, utcnow

# last_seen_at is written at most this often per session: a read per request, not a write per request.
TOUCH_EVERY = timedelta(seconds=30)


def token_hash(token: str) -> str:
    """The stored key of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def password_stamp(password_hash: str) -> str:
    """A short fingerprint of the stored password hash: a reset changes it, and so ends older sessions."""
    return hashlib.sha256(password_hash.encode()).hexdigest()


@dataclass(frozen=True)
class SessionLimits:
    """How long a session lives: idle_s since its last use, max_s since login."""

    idle_s: float
    max_s: float


def open_session(database: Database, token: str, user_name: str) -> None:
    """Record a new session for user_name (an enabled user who just logged in)."""
    with database.write() as session:
        user = session.scalar(select(User).where(User.name == user_name))
        if user is None or user.disabled:
            return
        session.add(
            WebSession(token_hash=token_hash(token), user_id=user.id, password_stamp=password_stamp(user.password_hash))
        )


def session_user(database: Database, key: str, limits: SessionLimits) -> str | None:
    """The user name of a valid session (key: its token hash), or None; an ended session is deleted."""
    now = utcnow()
    with database.read() as session:
        row = session.execute(
            select(WebSession, User).join(User, User.id == WebSession.user_id).where(WebSession.token_hash == key)
        ).first()
    if row is None:
        return None
    web_session, user = row
    valid = (
        not user.disabled
        and web_session.password_stamp == password_stamp(user.password_hash)
        and now - as_utc(web_session.last_seen_at) <= timedelta(seconds=limits.idle_s)
        and now - as_utc(web_session.created_at) <= timedelta(seconds=limits.max_s)
    )
    if not valid:
        end_session(database, key)
        return None
    if now - as_utc(web_session.last_seen_at) >= TOUCH_EVERY:
        with database.write() as session:
            session.execute(update(WebSession).where(WebSession.token_hash == key).values(last_seen_at=now))
    return user.name


def end_session(database: Database, key: str) -> None:
    """Delete one session (logout, or found ended)."""
    with database.write() as session:
        session.execute(delete(WebSession).where(WebSession.token_hash == key))


def session_keys(database: Database) -> list[str]:
    """The keys (token hashes) of every stored session."""
    with database.read() as session:
        return list(session.scalars(select(WebSession.token_hash)))


def delete_user_sessions(session, user_id: int) -> None:
    """Delete every session of a user inside the caller's write (a password reset, a disabled account)."""
    session.execute(delete(WebSession).where(WebSession.user_id == user_id))
