"""Named commands and queries on event hooks and their deliveries (the rules are training/hooks.py's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from db.engine import Database
from db.schema import EventHook, HookDelivery, User, as_utc, utcnow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class HookRow:
    """A registered hook as the rest of Loupe sees it (never with its secret)."""

    id: int
    url: str
    events: list[str]
    allow_private: bool
    created_by: str | None  # the admin's name; None when it came from the command line
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True)
class DeliveryRow:
    """One event owed to one hook, and how sending it went so far."""

    id: int
    hook_id: int
    url: str
    event: str
    payload: dict
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class DueDelivery:
    """A delivery whose next attempt is due, with what sending it needs."""

    delivery: DeliveryRow
    secret: str
    allow_private: bool


def _hook_row(hook: EventHook, creator: str | None) -> HookRow:
    return HookRow(
        hook.id, hook.url, list(hook.events or []), hook.allow_private, creator, hook.created_at, hook.disabled_at
    )


def _delivery_row(delivery: HookDelivery, url: str) -> DeliveryRow:
    return DeliveryRow(
        delivery.id,
        delivery.hook_id,
        url,
        delivery.event,
        dict(delivery.payload or {}),
        delivery.status,
        delivery.attempts,
        delivery.next_attempt_at,
        delivery.last_error,
        delivery.last_status_code,
        delivery.created_at,
        delivery.delivered_at,
    )


def _bound(moment: datetime) -> datetime:
    """moment in UTC: SQLite stores the wall time without its zone, so every time compared must be UTC."""
    return as_utc(moment).astimezone(UTC)


def _hooks_query():
    return select(EventHook, User.name).outerjoin(User, User.id == EventHook.created_by)


def add_hook(
    database: Database, url: str, secret: str, events: list[str], allow_private: bool, created_by: int | None
) -> HookRow:
    """Register a hook."""
    with database.write() as session:
        hook = EventHook(url=url, secret=secret, events=events, allow_private=allow_private, created_by=created_by)
        session.add(hook)
        session.flush()
        creator = session.get(User, created_by).name if created_by is not None else None
        return _hook_row(hook, creator)


def get_hook(database: Database, hook_id: int) -> HookRow | None:
    """The hook with this id (removed or not), or None."""
    with database.read() as session:
        found = session.execute(_hooks_query().where(EventHook.id == hook_id)).first()
        return _hook_row(*found) if found else None


def list_hooks(database: Database) -> list[HookRow]:
    """The hooks not removed, oldest first."""
    with database.read() as session:
        rows = session.execute(_hooks_query().where(EventHook.disabled_at.is_(None)).order_by(EventHook.id)).all()
        return [_hook_row(hook, creator) for hook, creator in rows]


def disable_hook(database: Database, hook_id: int, undelivered_reason: str) -> HookRow | None:
    """Remove a hook (its row and deliveries stay, for the record) and fail its pending deliveries with
    undelivered_reason; None when there is no such hook, or it was removed already."""
    now = utcnow()
    with database.write() as session:
        hook = session.get(EventHook, hook_id, with_for_update=True)
        if hook is None or hook.disabled_at is not None:
            return None
        hook.disabled_at = now
        session.execute(
            update(HookDelivery)
            .where(HookDelivery.hook_id == hook_id, HookDelivery.status == PENDING)
            .values(status=FAILED, next_attempt_at=None, last_error=undelivered_reason)
        )
        creator = session.get(User, hook.created_by).name if hook.created_by is not None else None
        return _hook_row(hook, creator)


def add_deliveries(database: Database, event: str, payload: dict) -> list[int]:
    """A pending delivery of payload for every hook (not removed) that asked for event, due now; their ids."""
    now = utcnow()
    with database.write() as session:
        hooks = session.scalars(select(EventHook).where(EventHook.disabled_at.is_(None)))
        rows = [
            HookDelivery(hook_id=hook.id, event=event, payload=payload, status=PENDING, attempts=0, next_attempt_at=now)
            for hook in hooks
            if event in (hook.events or [])
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def due_deliveries(database: Database, now: datetime, limit: int) -> list[DueDelivery]:
    """Pending deliveries of hooks not removed whose next attempt is due at now, the longest-waiting first."""
    with database.read() as session:
        rows = session.execute(
            select(HookDelivery, EventHook)
            .join(EventHook, EventHook.id == HookDelivery.hook_id)
            .where(
                HookDelivery.status == PENDING,
                HookDelivery.next_attempt_at <= _bound(now),
                EventHook.disabled_at.is_(None),
            )
            .order_by(HookDelivery.next_attempt_at, HookDelivery.id)
            .limit(limit)
        ).all()
        return [
            DueDelivery(_delivery_row(delivery, hook.url), hook.secret, hook.allow_private) for delivery, hook in rows
        ]


def claim_attempt(database: Database, delivery_id: int, attempts_seen: int, retry_at: datetime) -> bool:
    """Count one more attempt, due again at retry_at should its sender never report back (a crash);
    False when another sender counted it first."""
    with database.write() as session:
        claimed = session.execute(
            update(HookDelivery)
            .where(
                HookDelivery.id == delivery_id,
                HookDelivery.status == PENDING,
                HookDelivery.attempts == attempts_seen,
            )
            .values(attempts=attempts_seen + 1, next_attempt_at=_bound(retry_at))
        )
        return claimed.rowcount == 1


def record_attempt(
    database: Database,
    delivery_id: int,
    status: str,
    *,
    status_code: int | None,
    error: str | None,
    next_attempt_at: datetime | None = None,
    delivered_at: datetime | None = None,
) -> None:
    """Store how an attempt went: delivered, failed for good, or pending again until next_attempt_at."""
    with database.write() as session:
        delivery = session.get(HookDelivery, delivery_id)
        delivery.status = status
        delivery.last_status_code = status_code
        delivery.last_error = error
        delivery.next_attempt_at = _bound(next_attempt_at) if next_attempt_at else None
        delivery.delivered_at = _bound(delivered_at) if delivered_at else None


def recent_deliveries(database: Database, limit: int = 50) -> list[DeliveryRow]:
    """The newest deliveries of every hook, removed ones included."""
    with database.read() as session:
        rows = session.execute(
            select(HookDelivery, EventHook.url)
            .join(EventHook, EventHook.id == HookDelivery.hook_id)
            .order_by(HookDelivery.id.desc())
            .limit(limit)
        ).all()
        return [_delivery_row(delivery, url) for delivery, url in rows]


def get_delivery(database: Database, delivery_id: int) -> DeliveryRow | None:
    """The delivery with this id, or None."""
    with database.read() as session:
        found = session.execute(
            select(HookDelivery, EventHook.url)
            .join(EventHook, EventHook.id == HookDelivery.hook_id)
            .where(HookDelivery.id == delivery_id)
        ).first()
        return _delivery_row(*found) if found else None


def count_failed_since(database: Database, since: datetime) -> int:
    """Deliveries to hooks still registered that failed for good, of events since `since`."""
    with database.read() as session:
        return session.scalar(
            select(func.count(HookDelivery.id))
            .join(EventHook, EventHook.id == HookDelivery.hook_id)
            .where(
                HookDelivery.status == FAILED,
                HookDelivery.created_at >= _bound(since),
                EventHook.disabled_at.is_(None),
            )
        )
