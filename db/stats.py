"""Dataset counts for the Admin tab, the health route and the stats command."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from db.engine import Database
from db.schema import Image, ImportRejection, Label


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
