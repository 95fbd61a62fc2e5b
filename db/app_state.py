"""Small named JSON values every process shares, and short leases so only one process does a job at a time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from db.engine import Database
from db.schema import AppState, utcnow


def get_state(database: Database, key: str) -> dict:
    """The value stored under key ({} when none is)."""
    with database.read() as session:
        row = session.get(AppState, key)
        return dict(row.value) if row else {}


def set_state(database: Database, key: str, value: dict) -> None:
    """Store value under key, replacing what was there."""
    with database.write() as session:
        row = session.get(AppState, key, with_for_update=True)
        if row is None:
            session.add(AppState(key=key, value=value))
        else:
            row.value = value


def try_lease(database: Database, name: str, holder: str, seconds: float) -> bool:
    """Take the lease called name for holder unless another holder's lease is still running."""
    key = f"lease:{name}"
    now = utcnow()
    expires = (now + timedelta(seconds=seconds)).isoformat()
    try:
        with database.write() as session:
            row = session.get(AppState, key, with_for_update=True)
            if row is None:
                session.add(AppState(key=key, value={"holder": holder, "expires_at": expires}))
                return True
            value = dict(row.value)
            if value.get("holder") not in (holder, None) and value.get("expires_at", "") > now.isoformat():
                return False
            row.value = {"holder": holder, "expires_at": expires}
            return True
    except IntegrityError:  # another process created the row first: it holds the lease
        return False


def release_lease(database: Database, name: str, holder: str) -> None:
    """Give the lease back if holder still has it."""
    with database.write() as session:
        row = session.get(AppState, f"lease:{name}", with_for_update=True)
        if row is not None and row.value.get("holder") == holder:
            row.value = {"holder": None, "expires_at": ""}
