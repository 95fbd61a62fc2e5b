"""Label-error scores: each scoring pass's result per image, and the reads the queue and CLI make of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, insert, or_, select

from db.engine import Database
from db.queue import reviewed_clause  # the queue's own meaning of "reviewed"
from db.schema import Image, Label, Score, as_utc


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


def score_of(database: Database, scorer: str, image_id: int) -> ScoredImage | None:
    """One image's result in a scoring pass, or None when the pass did not score it."""
    with database.read() as session:
        row = session.execute(
            select(Score, Image.original_name)
            .join(Image, Image.id == Score.image_id)
            .where(Score.scorer == scorer, Score.image_id == image_id)
        ).first()
    if row is None:
        return None
    score, name = row
    return ScoredImage(
        score.image_id, name, score.score, score.given_label, score.predicted_label, list(score.top or [])
    )


def pass_results(database: Database, scorer: str) -> dict[int, NewScore]:
    """Every image's result in a scoring pass, by image id (exports read them all at once)."""
    with database.read() as session:
        rows = session.execute(select(Score).where(Score.scorer == scorer)).scalars().all()
        return {
            s.image_id: NewScore(
                s.image_id, s.score, s.given_label, s.predicted_label, s.given_probability, list(s.top or [])
            )
            for s in rows
        }


@dataclass(frozen=True)
class ConfidentImage:
    """An active image whose current label is trusted: an expert reviewed it, or the pass is sure of it."""

    image_id: int
    stored_path: str
    thumb_path: str
    original_name: str
    reviewed: bool
    # The pass's out-of-sample probability of the current label, when it scored that label.
    given_probability: float | None


def confident_images(
    database: Database,
    scorer: str,
    label: str,
    *,
    min_probability: float,
    reviewing: Sequence[str],
    among: Sequence[int] | None = None,
) -> list[ConfidentImage]:
    """Active images (of among, when given) labeled label now that an expert reviewed (a reviewing decision
    not undone) or that the pass scored with that same label at min_probability or more."""
    reviewed = reviewed_clause(reviewing)
    sure = and_(
        Score.given_label == label,
        Score.given_probability >= min_probability,
    )
    query = (
        select(
            Image.id,
            Image.stored_path,
            Image.thumb_path,
            Image.original_name,
            reviewed.label("reviewed"),
            Score.given_probability,
            sure.label("sure"),
        )
        .join(Label, Image.label_id == Label.id)
        .outerjoin(Score, and_(Score.image_id == Image.id, Score.scorer == scorer))
        .where(Image.status == "active", Label.name == label, or_(reviewed, sure))
    )
    if among is not None:
        query = query.where(Image.id.in_(list(among)))
    with database.read() as session:
        rows = session.execute(query).all()
    # A probability scored for another label (the image was relabeled since) says nothing about this one.
    return [ConfidentImage(*card, bool(r), p if s else None) for *card, r, p, s in rows]


def probabilities_of(database: Database, scorer: str, image_ids: Sequence[int]) -> dict[int, dict[str, float]]:
    """Per image, the probabilities the pass stored (its top classes and its given label's), by class."""
    with database.read() as session:
        rows = session.execute(
            select(Score.image_id, Score.top, Score.given_label, Score.given_probability).where(
                Score.scorer == scorer, Score.image_id.in_(list(image_ids))
            )
        ).all()
    found = {}
    for image_id, top, given, given_probability in rows:
        known = {str(label): float(p) for label, p in top or []}
        if given is not None and given_probability is not None:
            known.setdefault(given, float(given_probability))
        found[image_id] = known
    return found


def pass_stamp(database: Database, scorer: str) -> str:
    """A cheap fingerprint of the scores stored under scorer: how many, and when the newest was written.

    replace_scores writes a whole pass at once with new computed_at times, so a new pass, or a pass over a
    different set of images, gives a new stamp; reading it is one aggregate on the (scorer, score) index.
    """
    with database.read() as session:
        count, newest = session.execute(
            select(func.count(), func.max(Score.computed_at)).where(Score.scorer == scorer)
        ).one()
    return f"{count}@{as_utc(newest).isoformat() if newest else '-'}"
