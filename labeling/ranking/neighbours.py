"""Nearest confidently-labeled neighbours of an image, from the features the queue's ranking was scored on.

The expert under review compares the image with a few images of its given class and of the predicted
class instead of recalling what those classes look like. Nothing is embedded here: the index is built
from the embeddings cached for the serving scoring pass (scoring.serving_features), reduced by PCA to
INDEX_DIMS dimensions with rows of unit length, so cosine similarity is one matrix-vector product.

The index is kept per process and database, and rebuilt only when its marker changes: the serving
pass's name and stamp (db/scores.py pass_stamp), so once per stored pass. Labels, statuses and
decisions are read from the database at every request, so a relabel or a delete counts at once.

"Confidently labeled" (CONFIDENT_PROBABILITY): an image whose current label an expert reviewed (kept or
relabeled it, not undone), or whose current label the serving pass, out of sample, gives a probability
of at least one half. Neither the image itself nor deleted images are ever shown.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field

import numpy as np

from context import Context
from db import queue as queue_db
from db import scores as score_db
from labeling.ranking.scoring import serving_features, serving_scorer

logger = logging.getLogger(__name__)

INDEX_DIMS = 64
PCA_SAMPLE = 4000
CONFIDENT_PROBABILITY = 0.5
NEIGHBOURS = 4


@dataclass(frozen=True)
class NeighbourIndex:
    """Unit-length reduced features of the images embedded for one serving pass, rows in image-id order."""

    marker: tuple
    image_ids: np.ndarray  # sorted ascending
    vectors: np.ndarray  # (N, d) float32, rows of unit length

    def rows(self, image_ids: np.ndarray) -> np.ndarray:
        """The rows of image_ids that are in the index (others left out), in the order given."""
        positions = np.searchsorted(self.image_ids, image_ids)
        positions = np.minimum(positions, max(len(self.image_ids) - 1, 0))
        found = self.image_ids[positions] == image_ids if len(self.image_ids) else np.zeros(len(image_ids), bool)
        return positions[found]

    def row(self, image_id: int) -> int | None:
        """The row of one image, or None when it is not in the index."""
        rows = self.rows(np.array([image_id], dtype=np.int64))
        return int(rows[0]) if len(rows) else None


@dataclass(frozen=True)
class Neighbour:
    """One confidently-labeled image near the one under review."""

    image_id: int
    stored_path: str
    thumb_path: str
    original_name: str
    similarity: float  # cosine in the reduced feature space, 1 = same direction
    reviewed: bool  # an expert kept or relabeled it
    probability: float | None  # the serving pass's probability of its current label, when it scored that label


@dataclass(frozen=True)
class Neighbours:
    """The nearest confident images of one class, or a sentence saying why there are none."""

    label: str
    images: list[Neighbour] = field(default_factory=list)
    note: str | None = None


# Per open database (a process may hold several, as tests do); dropped with it.
_indexes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _key(context: Context):
    return context.database


def _lock(context: Context) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(_key(context), threading.Lock())


def index_marker(context: Context) -> tuple:
    """What the index depends on, cheap to read: the serving pass's name and its stamp (how many images it
    scored, when it was stored; the same stamp the dataset map is kept by). Decisions and deletes leave it
    alone: they are read at each request, so they never cost a rebuild."""
    scorer = serving_scorer(context)
    return scorer, score_db.pass_stamp(context.database, scorer)


def build_index(context: Context, marker: tuple | None = None) -> NeighbourIndex:
    """Load the serving pass's features (seconds at 10,000 images) and reduce them; nothing is embedded."""
    from sklearn.decomposition import PCA

    marker = marker if marker is not None else index_marker(context)
    images, features = serving_features(context)
    ids = np.array([image.image_id for image in images], dtype=np.int64)
    if len(images) < 2:
        return NeighbourIndex(marker, ids, np.zeros((len(images), 1), dtype=np.float32))
    dims = min(INDEX_DIMS, len(images) - 1, features.shape[1])
    # The directions are learned on a sample (most of the build's time is this fit), then every row projected.
    sample = np.random.default_rng(0).choice(len(images), min(len(images), PCA_SAMPLE), replace=False)
    pca = PCA(n_components=dims, svd_solver="randomized", iterated_power=3, random_state=0).fit(features[sample])
    reduced = pca.transform(features)
    reduced /= np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
    order = np.argsort(ids)  # load_embeddings orders by id already; sorted is what rows() relies on
    return NeighbourIndex(marker, ids[order], reduced[order].astype(np.float32))


def current_index(context: Context) -> NeighbourIndex:
    """This process's index for the database, rebuilt first if its marker changed (one build at a time)."""
    marker = index_marker(context)
    index = _indexes.get(_key(context))
    if index is not None and index.marker == marker:
        return index
    with _lock(context):
        index = _indexes.get(_key(context))
        if index is None or index.marker != marker:
            index = build_index(context, marker)
            _indexes[_key(context)] = index
    return index


def warm(context: Context) -> threading.Thread | None:
    """Build the index in a background thread unless a build is under way; the thread, or None.

    For a server starting up: the first reviewer then finds it built instead of waiting seconds.
    """
    if _lock(context).locked():
        return None

    def build() -> None:
        try:
            current_index(context)
        except Exception:  # noqa: BLE001 — a warm-up that fails leaves the first request to build (and report)
            logger.warning("the neighbour index was not built ahead of time", exc_info=True)

    thread = threading.Thread(target=build, name="loupe-neighbours", daemon=True)
    thread.start()
    return thread


def nearest_confident(
    context: Context, image_id: int, label: str, count: int = NEIGHBOURS, index: NeighbourIndex | None = None
) -> Neighbours:
    """The count images labeled label, confidently, nearest to image_id (never image_id itself), nearest first.

    index: the current index when the caller already holds it (saves reading the marker again).
    """
    index = index or current_index(context)
    row = index.row(image_id)
    if row is None:
        return Neighbours(label, note="This image was not in the last scoring pass, so it has no neighbours yet.")
    labeled = np.array(sorted(queue_db.labeled_image_ids(context.database, label)), dtype=np.int64)
    rows = index.rows(labeled[labeled != image_id])
    similarities = index.vectors[rows] @ index.vectors[row]
    rows = rows[np.argsort(-similarities, kind="stable")]
    # Confidence is checked nearest first, a few at a time: most labels are confident, so one batch usually does.
    found: list[Neighbour] = []
    for start in range(0, len(rows), count * 4):
        found += _confident(context, index, label, rows[start : start + count * 4], index.vectors[row])
        if len(found) >= count:
            break
    if not found:
        return Neighbours(label, note="No image of this class is confidently labeled yet.")
    return Neighbours(label, found[:count])


def _confident(
    context: Context, index: NeighbourIndex, label: str, rows: np.ndarray, query: np.ndarray
) -> list[Neighbour]:
    """The images at rows that are labeled label now and confident, in the order of rows."""
    if len(rows) == 0:
        return []
    ids = [int(i) for i in index.image_ids[rows]]
    confident = {
        image.image_id: image
        for image in score_db.confident_images(
            context.database,
            index.marker[0],
            label,
            min_probability=CONFIDENT_PROBABILITY,
            reviewing=_reviewing(),
            among=ids,
        )
    }
    return [
        Neighbour(
            image_id=i,
            stored_path=confident[i].stored_path,
            thumb_path=confident[i].thumb_path,
            original_name=confident[i].original_name,
            similarity=float(index.vectors[k] @ query),
            reviewed=confident[i].reviewed,
            probability=confident[i].given_probability,
        )
        for i, k in zip(ids, rows, strict=True)
        if i in confident
    ]


def _reviewing() -> tuple[str, ...]:
    from labeling.review import REVIEWING  # the review service owns what counts as reviewed

    return REVIEWING
