"""Near-duplicates: nearest neighbours on the cached embeddings, in chunks (never an N×N matrix)."""

from __future__ import annotations

import numpy as np

from context import Context
from db import decisions as decision_db
from db import duplicates as duplicate_db
from db.embeddings import load_embeddings
from models.embedder import embedder_key

SIMILARITY_THRESHOLD = (
    0.985  # cosine similarity at 224 px; on the demo digits 0.97 paired 347 different writings, 0.985 four
)
CHUNK_ROWS = 1024


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
    images, vectors = load_embeddings(context.database, embedder_key(224))
    found = similar_pairs(vectors, threshold) if len(images) else []
    return duplicate_db.add_pairs(context.database, [(images[i].image_id, images[j].image_id, s) for i, j, s in found])


def resolve_pair(context: Context, pair_id: int, resolution: str, user_id: int) -> None:
    """Apply an expert's call: delete the image(s) not kept, as decisions, then close the pair."""
    if resolution not in duplicate_db.RESOLUTIONS:
        raise decision_db.DecisionError(
            f"unknown choice {resolution!r}; choose one of {', '.join(duplicate_db.RESOLUTIONS)}"
        )
    pair = duplicate_db.get_pair(context.database, pair_id)
    # Claiming the pair first makes the call once: a second expert on the same pair is refused here.
    if pair is None or not duplicate_db.claim_pair(context.database, pair_id, resolution, user_id):
        raise decision_db.StaleDecision(f"duplicate pair {pair_id} was already decided or does not exist")
    to_delete = {
        "keep_first": [pair.second_id],
        "keep_second": [pair.first_id],
        "keep_both": [],
        "keep_neither": [pair.first_id, pair.second_id],
    }[resolution]
    for image_id in to_delete:
        try:
            decision_db.decide_on_current(
                context.database,
                image_id,
                user_id,
                "delete",
                model_version=f"duplicates:{embedder_key(224)}",
                score=pair.similarity,
            )
        except decision_db.StaleDecision:
            pass  # deleted meanwhile (in the queue, or through another pair): the call's outcome holds
