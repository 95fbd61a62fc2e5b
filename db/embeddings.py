"""Named queries and commands on cached embeddings (one vector per image and embedder)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from db.engine import Database
from db.schema import Embedding, Image, Label, utcnow


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


INSERT_ROWS = 1000  # rows per INSERT: 4,000 bound values, well under SQLite's and PostgreSQL's limits


def store_embeddings(database: Database, embedder: str, image_ids: list[int], vectors: np.ndarray) -> None:
    """Save one batch of embeddings; an image another process embedded meanwhile keeps its row.

    The quick loop and a head run that found images without one may embed the same image at once: the
    vectors are the same (same encoder, same pixels), so the first row stands and the second is skipped.
    """
    if not image_ids:
        return
    rows = [
        {"image_id": image_id, "embedder": embedder, "vector": vector.astype(np.float32).tobytes(), "created_at": now}
        for now in (utcnow(),)
        for image_id, vector in zip(image_ids, vectors, strict=True)
    ]
    with database.write() as session:
        insert = postgresql_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        for start in range(0, len(rows), INSERT_ROWS):
            statement = insert(Embedding).values(rows[start : start + INSERT_ROWS])
            session.execute(statement.on_conflict_do_nothing(index_elements=["image_id", "embedder"]))


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
