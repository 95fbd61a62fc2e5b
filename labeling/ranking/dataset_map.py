"""The dataset map: every active image placed in 2-D by its features, so classes, clusters and likely-wrong
labels can be seen at once and a region opened in Review.

Chosen on four datasets from different domains (bench/map.py: digits, rendered scripts, icons, emoji),
against PCA and UMAP in the same run: scikit-learn's Barnes-Hut t-SNE on the first 50 principal components
of the features the queue's ranking was scored on (scoring.serving_features). PCA to 2-D is fast but piles
the classes on top of each other (trustworthiness 0.80, same-class neighbours 0.34 against 0.65 in the
features). t-SNE and UMAP (umap-learn) both keep them apart; t-SNE kept more of each image's neighbours on
every dataset (trustworthiness 0.95 against 0.94, neighbours kept 0.48 against 0.43) for 4.1 s against 3.4 s
at ~1,000 images, and at 10,000 it was the faster (93–104 s against 131–197 s, 2 busy cores) and the only one
that kept neighbourhoods (0.99 against 0.55), with no numba compile (~30 s) in each new process.

The map is computed in the background after a rescore (refresh_map, from the scheduler) and stored; what
colours a point (its current label, whether it is likely wrong) is read when the map is shown, so decisions
made since the map was computed show at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from context import Context
from db import dataset_maps as map_db
from db import scores as score_db
from labeling.ranking.scoring import serving_features, serving_pass, serving_scorer

METHOD = "pca50+tsne"
PCA_COMPONENTS = 50  # scikit-learn's advice for t-SNE on many features: reduce to ~50 first
PERPLEXITY = 30.0  # scikit-learn's default; smaller for tiny sets (it must stay below the number of points)
SMALLEST_FOR_TSNE = 8  # fewer images than this: a 2-D PCA


def project(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 2) float32 map coordinates of the (N, D) features: t-SNE on the first PCA_COMPONENTS components."""
    from sklearn.decomposition import PCA

    n = len(features)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if n < 3 or features.shape[1] < 2:
        return np.column_stack([np.arange(n), np.zeros(n)]).astype(np.float32)
    reduced = PCA(n_components=min(PCA_COMPONENTS, n, features.shape[1]), random_state=seed).fit_transform(features)
    if n < SMALLEST_FOR_TSNE:
        return reduced[:, :2].astype(np.float32)
    from sklearn.manifold import TSNE

    perplexity = min(PERPLEXITY, (n - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(reduced).astype(np.float32)


def build_map(context: Context, keep_going: Callable[[], bool] | None = None) -> map_db.MapInfo | None:
    """Project the serving pass's features and store the map (replacing older ones); None when there is nothing
    to map or keep_going said stop."""
    scorer = serving_scorer(context)
    # Stamped before reading: a pass stored while this map is computed leaves it stale, so it is redone.
    stamp = score_db.pass_stamp(context.database, scorer)
    images, features = serving_features(context)
    if not images or (keep_going is not None and not keep_going()):
        return None
    started = time.monotonic()
    xy = project(features)
    seconds = time.monotonic() - started
    if keep_going is not None and not keep_going():
        return None
    ids = np.array([image.image_id for image in images], dtype=np.int64)
    map_db.store_map(context.database, scorer=scorer, stamp=stamp, method=METHOD, seconds=seconds, image_ids=ids, xy=xy)
    return map_db.latest_info(context.database)


def map_wanted(context: Context) -> str | None:
    """The serving pass's stamp when the stored map was not made from it as it stands; None when it was.

    Two small queries (the newest map's facts, the pass's score count and newest time): cheap enough for
    every scheduler tick.
    """
    scorer = serving_scorer(context)
    stamp = score_db.pass_stamp(context.database, scorer)
    if stamp.startswith("0@"):  # no pass has scored anything yet
        return None
    latest = map_db.latest_info(context.database)
    if latest is not None and (latest.scorer, latest.pass_stamp) == (scorer, stamp):
        return None
    return stamp


def refresh_map(context: Context, keep_going: Callable[[], bool] | None = None) -> map_db.MapInfo | None:
    """Build the map when the stored one was not made from the serving pass as it stands; else do nothing.

    Returns the new map's facts, or None when nothing was built.
    """
    return build_map(context, keep_going) if map_wanted(context) else None


_cache_lock = threading.Lock()
_cache: dict[str, map_db.StoredMap] = {}  # per database: the newest map this process has read


def latest_map(context: Context) -> map_db.StoredMap | None:
    """The newest stored map, read from the database only when its row id changed since the last call."""
    info = map_db.latest_info(context.database)
    if info is None:
        return None
    with _cache_lock:
        cached = _cache.get(context.database.url)
        if cached is not None and cached.info.id == info.id:
            return cached
    loaded = map_db.load_map(context.database, info.id)
    if loaded is not None:
        with _cache_lock:
            _cache[context.database.url] = loaded
    return loaded


@dataclass(frozen=True)
class MapPoints:
    """The map's points as they stand now: coordinates, current labels, likely-wrong marks.

    classes lists every current label on the map (filtered or not), so a class keeps its colour when the
    view is filtered; total and suspect_total count the whole map.
    """

    info: map_db.MapInfo
    image_ids: np.ndarray
    xy: np.ndarray
    labels: list[str | None]
    suspects: np.ndarray
    classes: list[str]
    total: int
    suspect_total: int
    bounds: tuple[float, float, float, float]  # (x min, x max, y min, y max) of the whole map, filtered or not

    def nearest(self, x: float, y: float, radius: float) -> list[int]:
        """Image ids of the points within radius of (x, y), nearest first; else the single nearest point."""
        if not len(self.image_ids):
            return []
        distances = np.hypot(self.xy[:, 0] - x, self.xy[:, 1] - y)
        order = np.argsort(distances, kind="stable")
        close = order[distances[order] <= radius]
        return [int(self.image_ids[i]) for i in (close if len(close) else order[:1])]

    def within(self, x0: float, y0: float, x1: float, y1: float) -> list[int]:
        """Image ids of the points inside the rectangle with corners (x0, y0) and (x1, y1)."""
        left, right, low, high = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        inside = (self.xy[:, 0] >= left) & (self.xy[:, 0] <= right) & (self.xy[:, 1] >= low) & (self.xy[:, 1] <= high)
        return [int(image_id) for image_id in self.image_ids[inside]]


def likely_wrong(facts: list[map_db.PointFacts], estimated_wrong: int | None) -> set[int]:
    """Images whose label the serving pass finds likely wrong: its estimated_wrong highest scores.

    The count is the pass's own confident-learning estimate of how many labels are wrong, and its highest
    scores are the first images the Review queue shows, so the marks are what Review would show first.
    Without an estimate, the images whose predicted label differs from their label. Only images still
    carrying the label that was scored: a relabel since the pass clears the mark at once.
    """
    scored = [f for f in facts if f.score is not None and f.scored_label is not None]
    if estimated_wrong is None:
        chosen = [f for f in scored if f.predicted_label != f.scored_label]
    else:
        chosen = sorted(scored, key=lambda f: (-f.score, f.image_id))[: max(0, estimated_wrong)]
    return {f.image_id for f in chosen if f.label == f.scored_label}


def map_points(context: Context, label: str | None = None, suspects_only: bool = False) -> MapPoints | None:
    """The newest map's active images with their current labels and marks, filtered to one class (label)
    and/or to likely-wrong ones; None when no map is stored."""
    stored = latest_map(context)
    if stored is None:
        return None
    facts = map_db.point_facts(context.database, serving_scorer(context))
    by_id = {f.image_id: f for f in facts}
    suspects = likely_wrong(facts, serving_pass(context).get("estimated_wrong"))
    keep = np.array([int(i) in by_id for i in stored.image_ids], dtype=bool)
    ids, xy = stored.image_ids[keep], stored.xy[keep]
    labels = [by_id[int(i)].label for i in ids]
    marked = np.array([int(i) in suspects for i in ids], dtype=bool)
    classes = sorted({name for name in labels if name is not None})
    total, suspect_total = len(ids), int(marked.sum())
    bounds = (
        (float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max()))
        if total
        else (0.0, 1.0, 0.0, 1.0)
    )
    shown = np.ones(len(ids), dtype=bool)
    if label is not None:
        shown &= np.array([name == label for name in labels], dtype=bool)
    if suspects_only:
        shown &= marked
    return MapPoints(
        info=stored.info,
        image_ids=ids[shown],
        xy=xy[shown],
        labels=[name for name, kept in zip(labels, shown, strict=True) if kept],
        suspects=marked[shown],
        classes=classes,
        total=total,
        suspect_total=suspect_total,
        bounds=bounds,
    )
