"""Dataset counts for the Admin tab, the health route and the stats command."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select

from db.engine import Database
from db.schema import Base, Decision, Image, ImportRejection, Label


@dataclass
class DatasetStats:
    """How many images there are, by status, split and label."""

    total: int = 0
    active: int = 0
    deleted: int = 0
    purged: int = 0
    unlabeled: int = 0
    rejected: int = 0
    by_split: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, dict[str, int]] = field(default_factory=dict)  # label -> split -> count


def dataset_stats(database: Database) -> DatasetStats:
    """Counts over every image and rejection."""
    stats = DatasetStats()
    with database.read() as session:
        rows = session.execute(
            select(Image.status, Image.split, Label.name, func.count())
            .select_from(Image)
            .outerjoin(Label, Image.label_id == Label.id)
            .group_by(Image.status, Image.split, Label.name)
        ).all()
        stats.rejected = session.scalar(select(func.count()).select_from(ImportRejection)) or 0
    for status, split, label, count in rows:
        stats.total += count
        if status in ("deleted", "purged"):
            setattr(stats, status, getattr(stats, status) + count)
            continue
        stats.active += count
        stats.by_split[split] = stats.by_split.get(split, 0) + count
        if label is None:
            stats.unlabeled += count
        else:
            per_split = stats.by_label.setdefault(label, {"train": 0, "valid": 0})
            per_split[split] = per_split.get(split, 0) + count
    stats.by_label = dict(sorted(stats.by_label.items()))
    return stats


@dataclass(frozen=True)
class ReviewCounts:
    """How far review has come: images with a standing decision, and those relabeled."""

    reviewed: int
    relabeled: int
    decisions: int


def review_counts(database: Database, *, reviewing: Sequence[str], relabeling: Sequence[str]) -> ReviewCounts:
    """Images with a standing decision of a reviewing action, those of a relabeling one, and all decisions."""
    undone = select(Decision.undoes_id).where(Decision.undoes_id.is_not(None))
    standing = select(Decision).where(Decision.action.in_(reviewing), Decision.id.not_in(undone)).subquery()
    with database.read() as session:
        reviewed = session.scalar(select(func.count(func.distinct(standing.c.image_id)))) or 0
        relabeled = (
            session.scalar(
                select(func.count(func.distinct(standing.c.image_id))).where(standing.c.action.in_(relabeling))
            )
            or 0
        )
        decisions = session.scalar(select(func.count()).select_from(Decision)) or 0
    return ReviewCounts(reviewed, relabeled, decisions)


def table_counts(database: Database, skip: tuple[str, ...] = ()) -> dict[str, int]:
    """Rows per table (a cheap fingerprint: did anything get written?)."""
    counts = {}
    with database.read() as session:
        for table in Base.metadata.sorted_tables:
            if table.name not in skip:
                counts[table.name] = session.scalar(select(func.count()).select_from(table)) or 0
    return counts
