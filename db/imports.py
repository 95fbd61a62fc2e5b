"""Named commands and queries on import batches and their rejections."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from db.engine import Database
from db.schema import ImportBatch, ImportRejection, utcnow


@dataclass(frozen=True)
class RejectionRow:
    """One refused item of an import."""

    batch_id: int
    item: str
    reason: str
    detail: str


def start_batch(database: Database, kind: str, source: str, user_name: str | None = None) -> int:
    """Open an import batch and return its id."""
    with database.write() as session:
        batch = ImportBatch(kind=kind, source=source, user_name=user_name)
        session.add(batch)
        session.flush()
        return batch.id


def record_rejection(database: Database, batch_id: int, item: str, reason: str, detail: str) -> None:
    """Remember one refused item and why, and count it on its batch."""
    with database.write() as session:
        session.add(ImportRejection(batch_id=batch_id, item=item, reason=reason, detail=detail))
        batch = session.get(ImportBatch, batch_id)
        batch.rejected += 1


def count_added(database: Database, batch_id: int, *, added: int = 0, duplicates: int = 0) -> None:
    """Add to a batch's counts of stored and already-known images."""
    with database.write() as session:
        batch = session.get(ImportBatch, batch_id)
        batch.added += added
        batch.duplicates += duplicates


def finish_batch(database: Database, batch_id: int) -> None:
    """Stamp the batch as finished."""
    with database.write() as session:
        session.get(ImportBatch, batch_id).finished_at = utcnow()


def list_rejections(database: Database, batch_id: int | None = None, limit: int = 1000) -> list[RejectionRow]:
    """Rejections, newest first, of one batch or of all."""
    query = select(ImportRejection).order_by(ImportRejection.id.desc()).limit(limit)
    if batch_id is not None:
        query = query.where(ImportRejection.batch_id == batch_id)
    with database.read() as session:
        return [RejectionRow(r.batch_id, r.item, r.reason, r.detail) for r in session.scalars(query)]
