"""Near-duplicates: nearest neighbours on the cached embeddings, in chunks (never an N×N matrix)."""

from __future__ import annotations

import numpy as np

from context import Context
from db import duplicate_pairs as duplicate_db
from db.embeddings import load_embeddings
from models.embedder import Embedder, embedder_key

EMBED_SIZE = 224  # pairs are found on the 224 px embeddings
SIMILARITY_THRESHOLD = (
    0.985  # cosine similarity at 224 px; on the demo digits 0.97 paired 347 different writings, 0.985 four
)
CHUNK_ROWS = 1024
PAIR_SCORER = f"duplicates:{embedder_key(EMBED_SIZE)}"  # what a pair's deletes record as their scoring pass


def pair_embedder(context: Context) -> Embedder:
    """The embedder whose vectors pairs are found on."""
    return Embedder(context.settings.data_dir, size=EMBED_SIZE)


def similar_pairs(vectors: np.ndarray, threshold: float, chunk_rows: int = CHUNK_ROWS) -> list[tuple[int, int, float]]:
    """(i, j, similarity) with i < j for every pair of unit rows at least threshold alike."""
    pairs = []
    for start in range(0, len(vectors), chunk_rows):
        block = vectors[start : start + chunk_rows] @ vectors.T  # chunk_rows × N at a time
        rows, columns = np.nonzero(block >= threshold)
        for row, column in zip(rows, columns, strict=True):
            i = start + row
            if i < column:
                pairs.append((int(i), int(column), float(block[row, column])))
    return pairs


def find_duplicates(context: Context, threshold: float = SIMILARITY_THRESHOLD) -> int:
    """Record every new near-duplicate pair among active embedded images; returns how many were new."""
    images, vectors = load_embeddings(context.database, embedder_key(EMBED_SIZE))
    found = similar_pairs(vectors, threshold) if len(images) else []
    return duplicate_db.add_pairs(context.database, [(images[i].image_id, images[j].image_id, s) for i, j, s in found])
