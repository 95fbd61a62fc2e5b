"""Label-error scoring on cached embeddings: out-of-sample heads put flipped labels first."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select
from training_fixtures import open_data_dir, shape_image, write_shapes

from db import embeddings as embedding_db
from db.images import iter_active_labeled
from db.schema import Embedding, Score
from labeling.imports.ingest import import_paths
from labeling.ranking.scoring import (
    ensure_embeddings,
    feature_embedders,
    label_error_scores,
    out_of_sample_probabilities,
    score_images,
)

FLIPPED = {"disc": [0, 1], "bar": [0, 1]}  # image numbers given the other class's label


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring")
    source = write_shapes(root / "shapes", per_class=16)
    for kind, numbers in FLIPPED.items():
        other = "bar" if kind == "disc" else "disc"
        for number in numbers:
            (source / kind / f"{kind}{number}.png").rename(source / other / f"flipped-{kind}{number}.png")
    (source / "loose.png").write_bytes(shape_image("disc", seed=4242))
    context = open_data_dir(root / "data")
    import_paths(context, [source])
    embedders = feature_embedders(context)
    computed = [ensure_embeddings(context, embedder) for embedder in embedders]
    scorer = score_images(context, embedders)
    yield context, embedders, computed, scorer
    context.database.dispose()


def test_embeddings_are_computed_once(scored):
    context, embedders, computed, _ = scored
    assert computed == [33, 33]
    assert [ensure_embeddings(context, embedder) for embedder in embedders] == [0, 0]
    with context.database.read() as session:
        assert session.scalar(select(func.count()).select_from(Embedding)) == 66
    images, matrix = embedding_db.load_embeddings(context.database, embedders[0].key)
    # Four stage ends, each mean- and max-pooled: 2 x (80 + 112 + 192 + 320) features.
    assert matrix.shape == (33, 1408) and np.allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-4)


def test_flipped_labels_rank_first(scored):
    context, _, _, scorer = scored
    with context.database.read() as session:
        rows = session.execute(
            select(Score.image_id, Score.top)
            .where(Score.scorer == scorer, Score.given_label.is_not(None))
            .order_by(Score.score.desc())
        ).all()
    flipped_ids = {r.id for r in iter_active_labeled(context.database) if r.original_name.startswith("flipped-")}
    assert len(rows) == 32
    assert len(flipped_ids & {image_id for image_id, _ in rows[:4]}) >= 3
    assert all(len(top) == 2 and top[0][1] >= top[1][1] for _, top in rows)


def test_score_command_lists_the_likeliest_mistakes(scored):
    from training_fixtures import run_cli

    context, *_ = scored
    result = run_cli(context.settings.data_dir, "score", "--top", "4")
    assert result.returncode == 0, result.stderr
    assert "scored 33 images" in result.stdout and "labels look wrong" in result.stdout
    assert result.stdout.count("flipped-") >= 3


def test_unlabeled_images_are_scored_by_uncertainty(scored):
    context, _, _, scorer = scored
    with context.database.read() as session:
        unlabeled = session.execute(
            select(Score.score, Score.predicted_label, Score.top).where(
                Score.scorer == scorer, Score.given_label.is_(None)
            )
        ).all()
    assert len(unlabeled) == 1
    score, predicted, top = unlabeled[0]
    (first, p_first), (_, p_second) = top
    assert predicted == first and p_first >= p_second
    assert score == pytest.approx(1 - (p_first - p_second), abs=1e-6)  # uncertainty: 1 - margin
    assert p_first > 0.5 and score < 0.9  # the loose image is a plain disc: the head is fairly sure


def test_out_of_sample_probabilities_never_see_their_own_row():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 5))
    labels = np.array(["a", "b", "c"] * 20)  # pure noise: nothing to learn
    probabilities, classes = out_of_sample_probabilities(features, labels)
    assert list(classes) == ["a", "b", "c"] and np.allclose(probabilities.sum(axis=1), 1)
    given = np.searchsorted(classes, labels)
    # A head that had seen each row would be confident in its (random) label; held out, it is not.
    assert probabilities[np.arange(60), given].mean() < 0.5


@pytest.mark.parametrize("ranking", ["self_confidence", "normalized_margin", "confidence_weighted_entropy"])
def test_rankings_order_a_confident_mistake_first(ranking):
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    given = np.array([0, 0, 0])
    scores = label_error_scores(probabilities, given, ranking)
    assert np.argmax(scores) == 1 and np.argmin(scores) == 0
    with pytest.raises(ValueError, match="unknown ranking"):
        label_error_scores(probabilities, given, "vibes")


def test_the_queue_reads_the_last_default_pass_with_its_estimate(scored):
    from labeling.ranking.scoring import serving_pass, serving_scorer

    context, embedders, _, scorer = scored
    assert serving_scorer(context) == scorer
    serving = serving_pass(context)
    assert serving["labeled"] == 32 and serving["splits"] == 3
    assert 1 <= serving["estimated_wrong"] <= 16  # four flipped of 32; confident learning's count is near that
    other = score_images(context, embedders, ranking="normalized_margin")
    assert other != scorer and serving_scorer(context) == scorer  # another ranking does not take the queue


def test_averaging_fold_splits_changes_borderline_rows_only():
    rng = np.random.default_rng(1)
    features = np.vstack([rng.normal(0, 1, (30, 4)), rng.normal(2, 1, (30, 4))])
    labels = np.array(["a"] * 30 + ["b"] * 30)
    one, _ = out_of_sample_probabilities(features, labels, splits=1)
    three, _ = out_of_sample_probabilities(features, labels, splits=3)
    assert np.allclose(three.sum(axis=1), 1) and not np.allclose(one, three)
    assert np.abs(one - three).max() < 0.5  # the same heads on other splits: close, not equal


def test_a_pass_stops_between_splits_when_told_to():
    from labeling.ranking.scoring import ScoringStopped

    rng = np.random.default_rng(2)
    features = rng.normal(size=(40, 3))
    labels = np.array(["a", "b"] * 20)
    asked = []

    def keep_going():
        asked.append(True)
        return False

    with pytest.raises(ScoringStopped):
        out_of_sample_probabilities(features, labels, splits=3, keep_going=keep_going)
    assert len(asked) == 1  # the first split ran; the pass stopped before the second
    out_of_sample_probabilities(features, labels, splits=1, keep_going=keep_going)  # one split: never asked
    assert len(asked) == 1
