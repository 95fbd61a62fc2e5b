"""Named commands and queries on model versions; promotion and rollback are one transaction each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from db.engine import Database
from db.schema import ModelVersion, utcnow
from errors import LoupeError


class VersionError(LoupeError, ValueError):
    """A promotion or rollback that cannot be done, with a sentence saying why."""


@dataclass(frozen=True)
class VersionRow:
    """A model version as the rest of Loupe sees it."""

    id: int
    version: str
    run_id: int | None
    path: str
    status: str
    metrics: dict
    created_at: datetime
    promoted_at: datetime | None


def _row(version: ModelVersion) -> VersionRow:
    return VersionRow(
        version.id,
        version.version,
        version.run_id,
        version.path,
        version.status,
        dict(version.metrics or {}),
        version.created_at,
        version.promoted_at,
    )


def add_version(database: Database, version: str, run_id: int | None, path: str, metrics: dict) -> VersionRow:
    """Record a written version folder as a candidate."""
    with database.write() as session:
        row = ModelVersion(version=version, run_id=run_id, path=path, metrics=metrics, status="candidate")
        session.add(row)
        session.flush()
        return _row(row)


def get_version(database: Database, version: str) -> VersionRow | None:
    """The version with this name, or None."""
    with database.read() as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.version == version))
        return _row(row) if row else None


def promoted_version(database: Database) -> VersionRow | None:
    """The version serving predictions now, or None before the first promotion."""
    with database.read() as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.status == "promoted"))
        return _row(row) if row else None


def list_versions(database: Database) -> list[VersionRow]:
    """Every version, newest first."""
    with database.read() as session:
        return [_row(v) for v in session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()))]


def _promote_in(session, target: ModelVersion) -> VersionRow:
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.status == "promoted", ModelVersion.id != target.id)
        .values(status="retired")
    )
    target.status = "promoted"
    target.promoted_at = utcnow()
    session.flush()
    return _row(target)


def promote(database: Database, version: str) -> VersionRow:
    """Make version the one promoted version; the previous one becomes 'retired'."""
    with database.write() as session:
        target = session.scalar(select(ModelVersion).where(ModelVersion.version == version))
        if target is None or target.status == "pruned":
            raise VersionError(f"there is no version {version!r} to promote")
        return _promote_in(session, target)


def rollback(database: Database) -> VersionRow:
    """Promote again the version that was promoted most recently before the current one."""
    with database.write() as session:
        current = session.scalar(select(ModelVersion).where(ModelVersion.status == "promoted"))
        previous = session.scalar(
            select(ModelVersion)
            .where(ModelVersion.status == "retired", ModelVersion.promoted_at.is_not(None))
            .order_by(ModelVersion.promoted_at.desc())
            .limit(1)
        )
        if current is None or previous is None:
            raise VersionError("there is no earlier promoted version to roll back to")
        return _promote_in(session, previous)


def mark_pruned(database: Database, version: str) -> None:
    """Record that a version's folder was removed to keep only the last few."""
    with database.write() as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.version == version))
        row.status = "pruned"
