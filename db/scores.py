"""Label-error scores: each scoring pass's result per image, and the reads the queue and CLI make of them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select

from db.engine import Database
from db.schema import Image, Score


@dataclass(frozen=True)
class NewScore:
    """One image's result from a scoring pass."""

    image_id: int
    score: float
    given_label: str | None
    predicted_label: str
    given_probability: float | None
    top: list


def replace_scores(database: Database, scorer: str, scores: list[NewScore]) -> None:
    """Swap in a scoring pass's results for scorer in one transaction."""
    with database.write() as session:
        session.execute(delete(Score).where(Score.scorer == scorer))
        if scores:  # one executemany, not an ORM object per row: passes cover the whole dataset
            session.execute(
                insert(Score),
                [
                    {
                        "image_id": s.image_id,
                        "scorer": scorer,
                        "score": s.score,
                        "given_label": s.given_label,
                        "predicted_label": s.predicted_label,
                        "given_probability": s.given_probability,
                        "top": s.top,
                    }
                    for s in scores
                ],
            )


@dataclass(frozen=True)
class ScoredImage:
    """A stored score with the image's name, for listings."""

    image_id: int
    original_name: str
    score: float
    given_label: str | None
    predicted_label: str
    top: list


def top_scores(database: Database, scorer: str, limit: int = 20, labeled: bool = True) -> list[ScoredImage]:
    """The highest scores of a pass: likeliest label errors (labeled) or most uncertain (unlabeled)."""
    given = Score.given_label.is_not(None) if labeled else Score.given_label.is_(None)
    with database.read() as session:
        rows = session.execute(
            select(Score, Image.original_name)
            .join(Image, Image.id == Score.image_id)
            .where(Score.scorer == scorer, given, Image.status == "active")
            .order_by(Score.score.desc(), Score.image_id)
            .limit(limit)
        ).all()
    return [
        ScoredImage(s.image_id, name, s.score, s.given_label, s.predicted_label, list(s.top or [])) for s, name in rows
    ]


def count_scores(database: Database, scorer: str) -> int:
    """How many images a scoring pass scored."""
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(Score).where(Score.scorer == scorer)) or 0
