"""Named queries and commands on cached embeddings (one vector per image and embedder)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from db.engine import Database
from db.schema import Embedding, Image, Label


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
