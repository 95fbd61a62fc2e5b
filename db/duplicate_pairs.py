"""Near-duplicate pairs found on the embeddings, and the expert's call on each."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import aliased

from db.engine import Database
from db.schema import DuplicatePair, Image


@dataclass(frozen=True)
class PairRow:
    """A pending pair with both images' names."""

    id: int
    first_id: int
    second_id: int
    first_name: str
    second_name: str
    similarity: float
    status: str
    resolution: str | None


def add_pairs(database: Database, pairs: list[tuple[int, int, float]]) -> int:
    """Record new pairs (first_id < second_id); pairs already known are left as they are."""
    added = 0
    with database.write() as session:
        known = set(session.execute(select(DuplicatePair.first_id, DuplicatePair.second_id)).all())
        for first, second, similarity in pairs:
            if (first, second) not in known:
                session.add(DuplicatePair(first_id=first, second_id=second, similarity=similarity))
                known.add((first, second))
                added += 1
    return added


def pending_pairs(database: Database, limit: int = 50) -> list[PairRow]:
    """Pairs waiting for a call whose images are both still active, most similar first."""
    first, second = aliased(Image), aliased(Image)
    with database.read() as session:
        rows = session.execute(
            select(DuplicatePair, first.original_name, second.original_name)
            .join(first, first.id == DuplicatePair.first_id)
            .join(second, second.id == DuplicatePair.second_id)
            .where(DuplicatePair.status == "pending", first.status == "active", second.status == "active")
            .order_by(DuplicatePair.similarity.desc(), DuplicatePair.id)
            .limit(limit)
        ).all()
    return [PairRow(p.id, p.first_id, p.second_id, a, b, p.similarity, p.status, p.resolution) for p, a, b in rows]


def claim_pair(database: Database, pair_id: int, resolution: str, user_id: int) -> bool:
    """Record the expert's call on a pending pair; False when someone decided it first (or it is gone)."""
    with database.write() as session:
        claimed = session.execute(
            update(DuplicatePair)
            .where(DuplicatePair.id == pair_id, DuplicatePair.status == "pending")
            .values(status="resolved", resolution=resolution, resolved_by=user_id)
        )
        return claimed.rowcount == 1


def count_pending(database: Database) -> int:
    """Pairs still waiting for a call (whatever became of their images)."""
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(DuplicatePair).where(DuplicatePair.status == "pending"))


def get_pair(database: Database, pair_id: int) -> PairRow | None:
    """One pair, whatever its status."""
    with database.read() as session:
        pair = session.get(DuplicatePair, pair_id)
        if pair is None:
            return None
        names = {
            i.id: i.original_name
            for i in session.scalars(select(Image).where(Image.id.in_([pair.first_id, pair.second_id])))
        }
        return PairRow(
            pair.id,
            pair.first_id,
            pair.second_id,
            names.get(pair.first_id, ""),
            names.get(pair.second_id, ""),
            pair.similarity,
            pair.status,
            pair.resolution,
        )
