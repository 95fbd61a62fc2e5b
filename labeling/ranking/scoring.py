"""Label-error scores from out-of-sample probabilities: cross-validated heads on cached embeddings.

A model scores the images it trained on badly: it has memorised their labels, wrong ones included
(the flaw of the lesson's top_losses on the training set). Here every labeled image gets its class
probabilities from a head that never saw it (K-fold), on embeddings computed once per image.

Chosen on four datasets from different domains (bench/ranking.py: digits, rendered scripts, icons,
emoji), not on the digits alone:
- Features: the ImageNet EfficientNet-Lite0 body's last four stage ends (not its ImageNet-shaped head),
  mean- and max-pooled, each part of unit length, at 128 and 224 px side by side (models/embedder.py
  "stages"); signed-square-rooted and standardised. Or the operator's own encoder (LOUPE_EMBEDDING_MODEL).
- Head: a strongly regularised logistic regression, five folds, averaged over FOLD_SPLITS different
  splits of the images so that one unlucky split does not decide an image's place in the queue.
- Score: cleanlab's label quality (self-confidence by default), as 1 - quality so that higher means
  more likely wrong; cleanlab's confident-learning count estimates how many wrong labels remain.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from context import Context
from db import app_state
from db import embeddings as embedding_db
from db import scores as score_db
from models.embedder import Embedder, FileEmbedder, embedder_key, user_embedder

RANKINGS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")  # cleanlab's methods
DEFAULT_RANKING = "self_confidence"
FOLDS = 5
FOLD_SPLITS = 3
QUICK_SPLITS = 1  # the quick loop's first pass after decisions: one split, refined to FOLD_SPLITS when quiet
EMBED_BATCH = 32
FEATURE_SIZES = (128, 224)
HEAD_C = 0.01
SERVING_KEY = "ranking.serving"  # app_state: the scoring pass the queue reads, and what it estimated


def head_features(embeddings: np.ndarray) -> np.ndarray:
    """The heads' input: signed-square-rooted embeddings, standardised per feature over all images.

    The square root (power normalisation, usual for pooled CNN activations) damps the few large
    activations; its signed form leaves an operator's encoder with negative features (CLIP, DINOv2)
    its sign. Labels play no part, so nothing leaks between folds.
    """
    return standardised_head_features(embeddings)[0]


def standardised_head_features(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """head_features with the per-feature mean and std it used (of the signed roots), for a served head."""
    rooted = np.sign(embeddings) * np.sqrt(np.abs(embeddings))
    mean, std = rooted.mean(axis=0), np.maximum(rooted.std(axis=0), 1e-6)
    return (rooted - mean) / std, mean, std


def fit_head(features: np.ndarray, labels: np.ndarray, seed: int = 0):
    """A strongly regularised multinomial logistic-regression head on head_features."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=HEAD_C, max_iter=500, tol=1e-3, random_state=seed).fit(features, labels)


def load_features(context: Context, embedders: list[Embedder]) -> tuple[list[embedding_db.EmbeddedImage], np.ndarray]:
    """Active images embedded by every embedder, with their embeddings side by side."""
    return load_keyed_features(context, [embedder.key for embedder in embedders])


def load_keyed_features(context: Context, keys: list[str]) -> tuple[list[embedding_db.EmbeddedImage], np.ndarray]:
    """Active images with a cached embedding under every key, with the embeddings side by side."""
    tables = [embedding_db.load_embeddings(context.database, key) for key in keys]
    common = set.intersection(*({image.image_id for image in images} for images, _ in tables))
    images = [image for image in tables[0][0] if image.image_id in common]
    blocks = []
    for table_images, matrix in tables:
        rows = [index for index, image in enumerate(table_images) if image.image_id in common]
        blocks.append(matrix[rows] if rows else np.zeros((0, 0)))
    return images, (np.hstack(blocks) if images else np.zeros((0, 0)))


def scorer_for(embedder_keys: list[str], ranking: str = DEFAULT_RANKING) -> str:
    """The name a scoring pass on these embedders' features is stored under."""
    return f"heads:{'+'.join(embedder_keys)}:{ranking}"


def scorer_keys(scorer: str) -> list[str]:
    """The embedder keys a pass name was made from (the inverse of scorer_for)."""
    return scorer.split(":")[1].split("+")


def scorer_name(ranking: str = DEFAULT_RANKING) -> str:
    """The built-in ranking's pass name (Lite0 stages at FEATURE_SIZES)."""
    return scorer_for([embedder_key(size, stages=True) for size in FEATURE_SIZES], ranking)


def feature_embedders(context: Context) -> list[Embedder | FileEmbedder]:
    """The embedders whose outputs make the scoring features: the operator's encoder, or Lite0 stages.

    Raises EmbeddingModelError when LOUPE_EMBEDDING_MODEL names a file Loupe cannot use.
    """
    own = user_embedder(context.settings)
    if own is not None:
        return [own]
    return [Embedder(context.settings.data_dir, size=size, stages=True) for size in FEATURE_SIZES]


def wanted_scorer(context: Context) -> str:
    """The pass the queue should read with today's settings (cheap: the operator's model is checked once)."""
    own = user_embedder(context.settings)
    return scorer_for([own.key]) if own is not None else scorer_name()


def serving_scorer(context: Context) -> str:
    """The pass the queue reads: the last default-ranking pass stored, until a newer one replaces it.

    So a new method or a new encoder is scored in full before the queue switches to it, and a broken
    encoder file leaves the last good ranking serving.
    """
    return serving_pass(context).get("scorer") or scorer_name()


def serving_features(context: Context) -> tuple[list[embedding_db.EmbeddedImage], np.ndarray]:
    """The features the queue's ranking was scored on (head_features), for the dataset map and neighbours.

    Read from the embeddings cached for the serving pass, so nothing is embedded here; images added
    since that pass are missing until the next one.
    """
    images, features = load_keyed_features(context, scorer_keys(serving_scorer(context)))
    return images, (head_features(features) if images else features)


class ScoringStopped(Exception):
    """A scoring pass gave up because what it was scoring changed (keep_going said so)."""


def out_of_sample_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    folds: int = FOLDS,
    seed: int = 0,
    splits: int = FOLD_SPLITS,
    keep_going: Callable[[], bool] | None = None,
):
    """(N, C) probabilities where row i comes from heads trained without image i; and the classes.

    Averaged over `splits` different K-fold splits (seeds seed, seed + 1, ...): one split puts each image
    beside one random four fifths of the rest, and which ones moves a borderline image by a few places.
    keep_going is asked before each split after the first; False raises ScoringStopped.

    One split gives what cleanlab's estimate_cv_predicted_probabilities gives (the same folds and head:
    largest difference 0.000 on the digits), but fits the folds in threads, takes a stop between splits
    and tolerates a class missing from a training fold, so it stays ours.
    """
    from joblib import Parallel, delayed
    from sklearn.model_selection import StratifiedKFold

    classes = np.unique(labels)
    probabilities = np.zeros((len(labels), len(classes)))
    smallest = min(np.sum(labels == c) for c in classes)
    n_splits = max(2, min(folds, smallest))

    def held_out_probabilities(split_seed, train_rows, held_out):
        head = fit_head(features[train_rows], labels[train_rows], split_seed)
        return held_out, np.searchsorted(classes, head.classes_), head.predict_proba(features[held_out])

    for split_seed in range(seed, seed + splits):
        if split_seed > seed and keep_going is not None and not keep_going():
            raise ScoringStopped()
        splitter = StratifiedKFold(n_splits, shuffle=True, random_state=split_seed)
        # Folds are independent; scikit-learn's solver spends its time in BLAS calls that release the GIL.
        for held_out, columns, fold_probabilities in Parallel(n_jobs=os.cpu_count() or 1, prefer="threads")(
            delayed(held_out_probabilities)(split_seed, train_rows, held_out)
            for train_rows, held_out in splitter.split(features, labels)
        ):
            probabilities[np.ix_(held_out, columns)] += fold_probabilities / splits
    return probabilities, classes


def label_error_scores(probabilities: np.ndarray, given: np.ndarray, ranking: str = DEFAULT_RANKING) -> np.ndarray:
    """Higher means more likely mislabeled: 1 - cleanlab's label quality. given: column indices of the labels."""
    from cleanlab.rank import get_label_quality_scores

    if ranking not in RANKINGS:
        raise ValueError(f"unknown ranking {ranking!r}; choose one of {', '.join(RANKINGS)}")
    return 1.0 - get_label_quality_scores(given, probabilities, method=ranking)


def estimated_wrong_labels(probabilities: np.ndarray, given: np.ndarray) -> int | None:
    """Cleanlab's confident-learning estimate of how many labels are wrong (None when it cannot tell)."""
    from cleanlab.count import num_label_issues

    try:
        return int(num_label_issues(given, probabilities))
    except (ValueError, ZeroDivisionError):  # e.g. a class no held-out head ever predicts
        return None


def ensure_embeddings(context: Context, embedder: Embedder, progress: Callable[[int, int], None] | None = None) -> int:
    """Embed every active image that has no cached embedding; returns how many were computed."""
    missing = embedding_db.images_without_embedding(context.database, embedder.key)
    for start in range(0, len(missing), EMBED_BATCH):
        batch = missing[start : start + EMBED_BATCH]
        images = []
        for _, stored_path in batch:
            with Image.open(context.store.absolute(stored_path)) as image:
                image.load()
                images.append(image)
        vectors = embedder.embed(images)
        embedding_db.store_embeddings(context.database, embedder.key, [image_id for image_id, _ in batch], vectors)
        if progress:
            progress(min(start + EMBED_BATCH, len(missing)), len(missing))
    return len(missing)


def top_labels(probabilities: np.ndarray, classes: np.ndarray, count: int = 3) -> list[list]:
    """The count most likely labels of one row, with probabilities."""
    order = np.argsort(-probabilities)[:count]
    return [[str(classes[i]), float(probabilities[i])] for i in order]


def score_images(
    context: Context,
    embedders: list[Embedder | FileEmbedder],
    ranking: str = DEFAULT_RANKING,
    seed: int = 0,
    splits: int = FOLD_SPLITS,
    keep_going: Callable[[], bool] | None = None,
) -> str:
    """Score every active image from its cached embedding and store the pass; returns the scorer name.

    Labeled images: out-of-sample probabilities and their label-error score. Unlabeled images: the
    probabilities of a head trained on all labeled ones, scored by uncertainty (1 - margin). A pass of
    the default ranking becomes the one the queue reads (serving_scorer).
    """
    images, features = load_features(context, embedders)
    features = head_features(features) if len(images) else features
    labeled = [i for i, image in enumerate(images) if image.label is not None]
    unlabeled = [i for i, image in enumerate(images) if image.label is None]
    scorer = scorer_for([embedder.key for embedder in embedders], ranking)
    scores: list[score_db.NewScore] = []
    estimate = None
    labels = np.array([images[i].label for i in labeled])
    if len(set(labels)) >= 2:
        probabilities, classes = out_of_sample_probabilities(
            features[labeled], labels, seed=seed, splits=splits, keep_going=keep_going
        )
        given = np.searchsorted(classes, labels)
        values = label_error_scores(probabilities, given, ranking)
        estimate = estimated_wrong_labels(probabilities, given)
        for row, index in enumerate(labeled):
            scores.append(
                score_db.NewScore(
                    image_id=images[index].image_id,
                    score=float(values[row]),
                    given_label=str(labels[row]),
                    predicted_label=str(classes[probabilities[row].argmax()]),
                    given_probability=float(probabilities[row, given[row]]),
                    top=top_labels(probabilities[row], classes),
                )
            )
        if unlabeled:
            head = fit_head(features[labeled], labels, seed)
            unlabeled_probabilities = head.predict_proba(features[unlabeled])
            ordered = np.sort(unlabeled_probabilities, axis=1)
            margins = ordered[:, -1] - ordered[:, -2]
            for row, index in enumerate(unlabeled):
                scores.append(
                    score_db.NewScore(
                        image_id=images[index].image_id,
                        score=float(1.0 - margins[row]),
                        given_label=None,
                        predicted_label=str(head.classes_[unlabeled_probabilities[row].argmax()]),
                        given_probability=None,
                        top=top_labels(unlabeled_probabilities[row], head.classes_),
                    )
                )
    score_db.replace_scores(context.database, scorer, scores)
    if ranking == DEFAULT_RANKING:
        app_state.set_state(
            context.database,
            SERVING_KEY,
            {"scorer": scorer, "splits": splits, "labeled": len(labeled), "estimated_wrong": estimate},
        )
    return scorer


def serving_pass(context: Context) -> dict:
    """The pass the queue reads: its name, splits, labeled images scored and how many it estimated wrong."""
    return app_state.get_state(context.database, SERVING_KEY)


@dataclass(frozen=True)
class RescoreResult:
    """What one rescoring pass did."""

    scorer: str
    scored: int
    embedded: int
    seconds: float
    splits: int = FOLD_SPLITS


def rescore(
    context: Context,
    progress: Callable[[str, int, int], None] | None = None,
    splits: int = FOLD_SPLITS,
    keep_going: Callable[[], bool] | None = None,
) -> RescoreResult:
    """Embed what is new, then score every active image again: the queue's ranking after new decisions.

    splits: how many fold splits the probabilities average (QUICK_SPLITS: about a third of the time).
    keep_going: asked between splits; False stops the pass (ScoringStopped) and stores nothing.
    """
    started = time.monotonic()
    embedders = feature_embedders(context)
    embedded = 0
    for embedder in embedders:
        report = (lambda done, total, key=embedder.key: progress(f"embed {key}", done, total)) if progress else None
        embedded += ensure_embeddings(context, embedder, report)
    scorer = score_images(context, embedders, splits=splits, keep_going=keep_going)
    scored = score_db.count_scores(context.database, scorer)
    return RescoreResult(scorer, scored, embedded, time.monotonic() - started, splits)
