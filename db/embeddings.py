"""Named queries and commands on cached embeddings and label-error scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, insert, select

from db.engine import Database
from db.schema import Embedding, Image, Label, Score


def images_without_embedding(database: Database, embedder: str) -> list[tuple[int, str]]:
    """(id, stored path) of active images that have no embedding from this embedder yet."""
    cached = select(Embedding.image_id).where(Embedding.embedder == embedder)
    with database.read() as session:
        return [
            (image_id, path)
            for image_id, path in session.execute(
                select(Image.id, Image.stored_path)
                .where(Image.status == "active", Image.id.not_in(cached))
                .order_by(Image.id)
            )
        ]


def store_embeddings(database: Database, embedder: str, image_ids: list[int], vectors: np.ndarray) -> None:
    """Save one batch of embeddings."""
    with database.write() as session:
        for image_id, vector in zip(image_ids, vectors, strict=True):
            session.add(Embedding(image_id=image_id, embedder=embedder, vector=vector.astype(np.float32).tobytes()))


@dataclass(frozen=True)
class EmbeddedImage:
    """An active image's id, label (None when unlabeled) and split, with its row in the matrix."""

    image_id: int
    label: str | None
    split: str


def load_embeddings(database: Database, embedder: str) -> tuple[list[EmbeddedImage], np.ndarray]:
    """Every active image that has an embedding, and the (N, D) matrix in the same order."""
    with database.read() as session:
        rows = session.execute(
            select(Image.id, Label.name, Image.split, Embedding.vector)
            .join(Embedding, (Embedding.image_id == Image.id) & (Embedding.embedder == embedder))
            .outerjoin(Label, Image.label_id == Label.id)
            .where(Image.status == "active")
            .order_by(Image.id)
        ).all()
    images = [EmbeddedImage(image_id, label, split) for image_id, label, split, _ in rows]
    matrix = np.stack([np.frombuffer(vector, dtype=np.float32) for *_, vector in rows]) if rows else np.zeros((0, 0))
    return images, matrix


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


def score_of(database: Database, scorer: str, image_id: int) -> float | None:
    """An image's score in a pass, or None when it was not scored."""
    with database.read() as session:
        return session.scalar(select(Score.score).where(Score.scorer == scorer, Score.image_id == image_id))
