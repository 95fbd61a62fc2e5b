"""Near-duplicates on real embeddings: re-encoded and resized copies pair up, distinct images do not."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from training_fixtures import open_data_dir

from db import decisions as decision_db
from db import images as image_db
from db.duplicate_pairs import pending_pairs
from db.users import add_user
from labeling import review
from labeling.imports.ingest import import_paths
from labeling.ranking.duplicates import find_duplicates, similar_pairs
from labeling.ranking.scoring import ensure_embeddings
from models.embedder import Embedder


def smooth_image(seed: int) -> bytes:
    """A photo-like PNG: a coarse random colour field, upscaled smoothly."""
    from PIL import ImageFilter

    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8))
    image = coarse.resize((128, 128), Image.BICUBIC).filter(ImageFilter.GaussianBlur(3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def reencoded(data: bytes, size=None, quality=80) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if size:
        image = image.resize(size)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture
def near_copies(tmp_path):
    original = smooth_image(1)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "original.png").write_bytes(original)
    (tmp_path / "in" / "copy.jpg").write_bytes(reencoded(original, size=(96, 96)))
    for seed in range(4):
        (tmp_path / "in" / f"other{seed}.png").write_bytes(smooth_image(100 + seed))
    context = open_data_dir(tmp_path / "data")
    import_paths(context, [tmp_path / "in"], label="shape")
    ensure_embeddings(context, Embedder(context.settings.data_dir, size=224))
    yield context
    context.database.dispose()


def test_a_reencoded_copy_is_found_and_distinct_images_are_not(near_copies):
    assert find_duplicates(near_copies) >= 1
    pairs = pending_pairs(near_copies.database)
    names = [{p.first_name, p.second_name} for p in pairs]
    assert {"original.png", "copy.jpg"} in names
    assert names == [{"original.png", "copy.jpg"}]  # the four other images pair with nothing
    assert find_duplicates(near_copies) == 0  # known pairs are not added twice


def test_keep_one_deletes_the_other_through_a_decision(near_copies):
    expert = add_user(near_copies.database, "dee", "expert", "dee-password")
    find_duplicates(near_copies)
    pair = next(
        p for p in pending_pairs(near_copies.database) if {p.first_name, p.second_name} == {"original.png", "copy.jpg"}
    )
    review.resolve_pair(near_copies, expert, pair.id, "keep_first")
    assert image_db.get_image(near_copies.database, pair.second_id).status == "deleted"
    assert image_db.get_image(near_copies.database, pair.first_id).status == "active"
    assert [d.action for d in decision_db.list_decisions(near_copies.database)] == ["delete"]
    assert all(p.id != pair.id for p in pending_pairs(near_copies.database))
    with pytest.raises(review.StaleDecision, match="already decided"):
        review.resolve_pair(near_copies, expert, pair.id, "keep_both")
    with pytest.raises(review.DecisionError, match="unknown choice"):
        review.resolve_pair(near_copies, expert, pair.id, "flip a coin")


def test_similar_pairs_works_in_chunks():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8))
    vectors[7] = vectors[3] + 1e-3
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert [(i, j) for i, j, _ in similar_pairs(vectors, 0.999, chunk_rows=4)] == [(3, 7)]
