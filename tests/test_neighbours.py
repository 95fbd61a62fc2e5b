"""Evidence beside the image: nearest confidently-labeled neighbours from the cached embeddings, after a
real rescore of small generated images in three visually distinct classes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from training_fixtures import shape_image

from db import images as image_db
from db import scores as score_db
from db import users as user_db
from labeling import review
from labeling.imports.ingest import import_paths
from labeling.ranking import neighbours
from labeling.ranking.scoring import rescore, serving_scorer

PER_CLASS = 12
KINDS = ("disc", "bar", "grid")


def grid_image(seed: int) -> bytes:
    """A 64×64 PNG: a magenta lattice on noise, unlike a disc or a bar."""
    rng = np.random.default_rng(seed + 5000)
    pixels = rng.integers(0, 60, size=(64, 64, 3), dtype=np.uint8)
    step = int(rng.integers(8, 12))
    pixels[::step, :] = (220, 40, 200)
    pixels[:, ::step] = (220, 40, 200)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def picture(kind: str, seed: int) -> bytes:
    return grid_image(seed) if kind == "grid" else shape_image(kind, seed=seed + (1000 if kind == "bar" else 0))


@pytest.fixture
def scored(context, tmp_path):
    """Three classes of PER_CLASS images, one bar filed as a disc, one unlabeled disc; rescored for real."""
    source = tmp_path / "in"
    for kind in KINDS:
        (source / kind).mkdir(parents=True)
        for i in range(PER_CLASS):
            (source / kind / f"{kind}{i}.png").write_bytes(picture(kind, i))
    (source / "disc" / "filed-wrong.png").write_bytes(picture("bar", 99))  # a bar labeled disc
    (source / "loose.png").write_bytes(picture("disc", 77))  # no class folder: unlabeled
    import_paths(context, [source])
    rescore(context)
    expert = user_db.add_user(context.database, "erin", "expert", "erin-password")
    rows = {row.original_name: row for row in image_db.iter_active_labeled(context.database)}
    return context, expert, rows


def confident_ids(context, label: str) -> set[int]:
    """What the rule says is confident in label, straight from the scores and decisions."""
    found = score_db.confident_images(
        context.database,
        serving_scorer(context),
        label,
        min_probability=neighbours.CONFIDENT_PROBABILITY,
        reviewing=review.REVIEWING,
    )
    return {image.image_id for image in found}


def names(context, found: neighbours.Neighbours) -> list[str]:
    return [image_db.get_image(context.database, n.image_id).original_name for n in found.images]


def test_neighbours_are_confident_images_of_the_class_asked_nearest_first(scored):
    context, _, rows = scored
    disc = rows["disc0.png"]
    for label in KINDS:
        found = neighbours.nearest_confident(context, disc.id, label, count=4)
        assert found.label == label and found.note is None
        assert len(found.images) == 4
        assert all(image_db.get_image(context.database, n.image_id).label == label for n in found.images)
        assert disc.id not in {n.image_id for n in found.images}  # never the image itself
        similarities = [n.similarity for n in found.images]
        assert similarities == sorted(similarities, reverse=True)
        assert all(n.probability is not None and n.probability >= 0.5 for n in found.images)
    # The features see the classes: a disc is nearer to discs than to bars or lattices.
    nearest = {label: neighbours.nearest_confident(context, disc.id, label).images[0].similarity for label in KINDS}
    assert nearest["disc"] > max(nearest["bar"], nearest["grid"])
    every_disc = neighbours.nearest_confident(context, disc.id, "disc", count=100)
    assert {n.image_id for n in every_disc.images} == confident_ids(context, "disc") - {disc.id}


def test_unconfident_and_deleted_images_are_never_shown_and_a_relabel_is_followed(scored):
    context, expert, rows = scored
    probe, wrong = rows["disc1.png"], rows["filed-wrong.png"]
    given = score_db.score_of(context.database, serving_scorer(context), wrong.id)
    assert given.given_label == "disc"
    assert wrong.id not in confident_ids(context, "disc")  # the pass doubts its label: not shown as a disc

    def shown(label: str) -> set[int]:
        return {n.image_id for n in neighbours.nearest_confident(context, probe.id, label, count=100).images}

    assert wrong.id not in shown("disc") | shown("bar")
    review.decide(context, expert, wrong.id, "relabel", expected_last_id=None, new_label="bar")
    assert wrong.id in shown("bar") and wrong.id not in shown("disc")  # an expert's relabel is trusted at once

    nearest = neighbours.nearest_confident(context, probe.id, "disc", count=1).images[0]
    review.decide(context, expert, nearest.image_id, "delete", expected_last_id=None)
    assert nearest.image_id not in shown("disc")
    review.undo(context, expert)
    assert nearest.image_id in shown("disc")


def test_an_image_added_after_the_pass_has_no_neighbours_until_the_next(scored, tmp_path):
    context, expert, _ = scored
    late = tmp_path / "late" / "grid"
    late.mkdir(parents=True)
    (late / "late.png").write_bytes(picture("grid", 55))
    import_paths(context, [tmp_path / "late"])
    added = next(r for r in image_db.iter_active_labeled(context.database) if r.original_name == "late.png")
    found = neighbours.nearest_confident(context, added.id, "grid")
    assert found.images == [] and "not in the last scoring pass" in found.note
    rescore(context)  # embeds it and stores a pass: the index's marker changes and it is rebuilt
    found = neighbours.nearest_confident(context, added.id, "grid")
    assert len(found.images) == 4 and found.note is None


def test_evidence_shows_the_given_and_the_predicted_class(scored):
    context, expert, rows = scored
    wrong = rows["filed-wrong.png"]
    predicted = score_db.score_of(context.database, serving_scorer(context), wrong.id).predicted_label
    assert predicted == "bar"
    shown = review.evidence(context, expert, wrong.id)
    assert (shown.given.label, shown.predicted.label) == ("disc", "bar")
    assert len(shown.given.images) == 4 and len(shown.predicted.images) == 4

    loose = next(i for i in review.queue_page(context, expert, review.queue_db.QueueFilters(unlabeled=True)).items)
    shown = review.evidence(context, expert, loose.image_id)
    assert shown.given is None and shown.predicted.label == loose.predicted_label
    assert len(shown.predicted.images) == 4

    review.decide(context, expert, wrong.id, "delete", expected_last_id=None)
    gone = review.evidence(context, expert, wrong.id)
    assert gone.given is None and gone.predicted is None and "not in the dataset" in gone.note
    with pytest.raises(review.PermissionDenied):
        review.evidence(context, None, wrong.id)


def test_a_class_key_confirming_the_label_is_a_keep(scored):
    context, expert, rows = scored
    disc = rows["disc2.png"]
    kept = review.decide_class(context, expert, disc.id, "disc", expected_last_id=None)
    assert (kept.action, image_db.get_image(context.database, disc.id).label) == ("keep", "disc")
    moved = review.decide_class(context, expert, disc.id, "grid", expected_last_id=kept.id)
    assert (moved.action, image_db.get_image(context.database, disc.id).label) == ("relabel", "grid")
    with pytest.raises(review.StaleDecision):  # the view it was made on is gone
        review.decide_class(context, expert, disc.id, "bar", expected_last_id=kept.id)


def test_an_image_in_a_dataset_never_scored_gets_a_sentence_not_an_error(context, tmp_path):
    expert = user_db.add_user(context.database, "erin", "expert", "erin-password")
    (tmp_path / "in" / "disc").mkdir(parents=True)
    (tmp_path / "in" / "disc" / "only.png").write_bytes(picture("disc", 1))
    import_paths(context, [tmp_path / "in"])
    only = next(image_db.iter_active_labeled(context.database))
    shown = review.evidence(context, expert, only.id)
    assert shown.predicted is None and "did not score" in shown.note
    assert shown.given.images == [] and "not in the last scoring pass" in shown.given.note


def test_the_evidence_route_answers_experts_only(scored):
    import httpx
    from conftest import LiveServer

    context, _, rows = scored
    wrong = rows["filed-wrong.png"]
    with LiveServer(context) as server:
        url = f"{server.url}/api/images/{wrong.id}/evidence"
        assert httpx.get(url, timeout=30).status_code == 401
        answer = httpx.get(url, auth=("erin", "erin-password"), timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["given"]["label"], body["predicted"]["label"]) == ("disc", "bar")
        assert [n["image_id"] for n in body["predicted"]["images"]] == [
            n.image_id for n in neighbours.nearest_confident(context, wrong.id, "bar").images
        ]
        assert httpx.get(f"{server.url}/api/images/0/evidence", auth=("erin", "erin-password")).status_code == 422
