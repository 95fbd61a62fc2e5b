"""The dataset map: built from a real scoring pass, rebuilt only after a new pass, coloured by labels as they
stand now, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select
from training_fixtures import write_shapes

from db import dataset_maps as map_db
from db.images import iter_active_labeled
from db.schema import DatasetMap
from db.users import add_user, get_user
from labeling import review
from labeling.imports.ingest import import_paths
from labeling.ranking.dataset_map import build_map, latest_map, likely_wrong, map_points, refresh_map
from labeling.ranking.scoring import rescore, serving_pass
from ui.map_tab import draw_map, to_map, to_pixel

FLIPPED = {"disc": [0, 1], "bar": [0, 1]}  # image numbers given the other class's label


def import_flipped_shapes(context, root) -> dict[int, str]:
    """16 discs and 16 bars with two of each labeled as the other class; {image id: true class}."""
    source = write_shapes(root / "shapes", per_class=16)
    for kind, numbers in FLIPPED.items():
        other = "bar" if kind == "disc" else "disc"
        for number in numbers:
            (source / kind / f"{kind}{number}.png").rename(source / other / f"flipped-{kind}{number}.png")
    import_paths(context, [source])
    truth = {}
    for row in iter_active_labeled(context.database):
        name = row.original_name
        truth[row.id] = name.removeprefix("flipped-").rstrip("0123456789.png") if "flipped-" in name else row.label
    return truth


def map_rows(context) -> int:
    with context.database.read() as session:
        return session.scalar(select(func.count()).select_from(DatasetMap))


def test_map_is_built_after_a_pass_refreshed_only_when_the_pass_changes_and_follows_decisions(context, tmp_path):
    truth = import_flipped_shapes(context, tmp_path)
    assert refresh_map(context) is None and map_points(context) is None  # no pass yet: nothing to map

    rescore(context)
    built = refresh_map(context)
    assert built is not None and built.n == 32 and built.method == "pca50+tsne"
    stored = latest_map(context)
    assert stored.xy.shape == (32, 2) and np.isfinite(stored.xy).all()
    assert sorted(stored.image_ids.tolist()) == sorted(truth)
    assert latest_map(context) is stored  # cached by row id: no second read of the coordinates
    assert refresh_map(context) is None and map_db.latest_info(context.database).id == built.id

    # The map keeps the shapes apart: most of each image's 5 nearest map neighbours share its true class.
    classes = np.array([truth[int(i)] for i in stored.image_ids])
    distances = np.linalg.norm(stored.xy[:, None] - stored.xy[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    near = np.argsort(distances, axis=1)[:, :5]
    assert (classes[near] == classes[:, None]).mean() > 0.8

    points = map_points(context)
    estimated = serving_pass(context)["estimated_wrong"]
    assert points.total == 32 and points.classes == ["bar", "disc"]
    assert points.suspect_total == estimated >= 1
    flipped = {i for i, true_class in truth.items() if true_class != points.labels[list(points.image_ids).index(i)]}
    marked = set(points.image_ids[points.suspects].tolist())
    assert marked & flipped  # the marks point at labels that really are wrong

    discs = map_points(context, label="disc")
    assert discs.labels and set(discs.labels) == {"disc"} and discs.total == 32
    only_suspects = map_points(context, suspects_only=True)
    assert set(only_suspects.image_ids.tolist()) == marked and only_suspects.suspects.all()

    # A relabel after the map shows at once: the point takes its new label and loses its mark; no rebuild.
    add_user(context.database, "bob", "expert", "bob-password")
    target = sorted(marked)[0]
    old = points.labels[list(points.image_ids).index(target)]
    new = "bar" if old == "disc" else "disc"
    review.decide(context, get_user(context.database, "bob"), target, "relabel", expected_last_id=None, new_label=new)
    after = map_points(context)
    row = list(after.image_ids).index(target)
    assert after.labels[row] == new and not after.suspects[row] and after.suspect_total == len(marked) - 1
    assert refresh_map(context) is None

    # A new pass stamps the scores anew: the map is rebuilt, and only the newest map is kept.
    rescore(context)
    rebuilt = refresh_map(context)
    assert rebuilt is not None and rebuilt.id != built.id and map_rows(context) == 1
    assert latest_map(context).info.id == rebuilt.id


def test_build_map_stops_when_told_and_with_no_images(context, tmp_path):
    assert build_map(context) is None  # nothing imported
    import_flipped_shapes(context, tmp_path)
    rescore(context)
    assert build_map(context, keep_going=lambda: False) is None and map_rows(context) == 0
    assert build_map(context, keep_going=lambda: True) is not None and map_rows(context) == 1


def facts(image_id, label, score, scored_label, predicted):
    return map_db.PointFacts(image_id, label, score, scored_label, predicted)


def test_likely_wrong_is_the_estimated_count_of_top_scores_still_carrying_the_scored_label():
    rows = [
        facts(1, "cat", 0.9, "cat", "dog"),
        facts(2, "dog", 0.8, "cat", "dog"),  # relabeled since the pass
        facts(3, "cat", 0.7, "cat", "dog"),
        facts(4, "dog", 0.1, "dog", "dog"),
        facts(5, None, 0.95, None, "dog"),  # unlabeled: scored for uncertainty, never "wrong"
        facts(6, "cat", None, None, None),  # not scored
    ]
    assert likely_wrong(rows, 2) == {1}  # the top two labeled scores are 1 and 2; 2 was relabeled
    assert likely_wrong(rows, 3) == {1, 3}
    assert likely_wrong(rows, 0) == set()
    assert likely_wrong(rows, None) == {1, 3}  # no estimate: predicted differs from the scored label


def test_a_pixel_of_the_drawn_map_turns_back_into_its_point():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(300, 2)).astype(np.float32) * [5, 2]
    labels = ["a" if x < 0 else "b" for x in xy[:, 0]]
    pixels, view = draw_map(xy, labels, np.arange(300) % 10 == 0)
    assert pixels.shape == (700, 1000, 3) and pixels.dtype == np.uint8
    for x, y in xy[:5]:
        px, py = to_pixel(view, float(x), float(y))
        assert 0 <= px < 1000 and 0 <= py < 700
        back = to_map(view, px, py)
        assert np.allclose(back, (x, y), atol=1e-4)
        # Where a point is drawn, the pixel is not the white background.
        assert pixels[round(py), round(px)].min() < 250
