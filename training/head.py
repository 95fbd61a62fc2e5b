"""A head on the ranking's cached embeddings as a model version: fitted in seconds, served like any version.

The ranking (labeling/ranking/scoring.py) embeds every image once and fits logistic-regression heads on
those embeddings to score labels out of sample. The same head, fitted on the train split, is a
classifier in its own right: on the ranking's four datasets it errs less than the CPU fine-tune, and it
trains in seconds instead of minutes (bench/train.py). So it is a kind of model version
(`training_runs.kind = "head"`): its graph is the encoders plus the head (models/head_onnx.py), written
to the registry, judged by the gate and hot-swapped like a fine-tuned network.

It is also the baseline every fine-tune must beat at the gate (baseline_error), and what the loop checks
after each settled ranking (head_estimate): a head that would beat the served version is trained.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from context import Context
from db import runs as run_db
from errors import LoupeError
from labeling.ranking.scoring import (
    HEAD_C,
    ensure_embeddings,
    feature_embedders,
    fit_head,
    load_keyed_features,
    scorer_keys,
    standardised_head_features,
    wanted_scorer,
)
from models.embedder import Embedder, FileEmbedder
from models.head_onnx import EncoderGraph, compose_head
from models.registry import CLASSES_FILE, ONNX_FILE, write_version
from training.data import class_counts, snapshot, snapshot_digest
from training.evaluate import summarize

MAX_GRAPH_DIFFERENCE = 1e-3  # the written graph's probabilities against the fitted head's, on real images
CHECKED_IMAGES = 16


class HeadUnavailable(LoupeError, ValueError):
    """The ranking's encoder cannot be part of a head graph; the sentence says why."""


@dataclass(frozen=True)
class HeadData:
    """The snapshot's images (training/data.py snapshot) with the head's features, row for row."""

    frame: pd.DataFrame
    features: np.ndarray  # signed square roots, standardised: scoring.head_features' transform
    mean: np.ndarray
    std: np.ndarray
    embedders: list
    embedded_now: int  # active images that had no cached embedding yet: embedded (and cached) for this fit


def snapshot_embeddings(
    context: Context, frame: pd.DataFrame, keys: list[str], embedders: list | None, need_cache: bool = False
) -> tuple[np.ndarray, int]:
    """The frame's images' embeddings under keys side by side, in its order.

    Images without one are embedded and cached first, as the quick loop does (scoring.ensure_embeddings;
    whoever stores an image's row first keeps it). embedders (built when None and needed) compute them.
    need_cache: HeadUnavailable when no image is cached at all (no ranking ran: embedding everything is the
    ranking's work, not the gate's). Returns the matrix and how many images had to be embedded.
    """
    images, cached = load_keyed_features(context, keys)
    row_of = {image.image_id: row for row, image in enumerate(images)}
    ids = frame["image_id"].tolist()
    missing = sum(image_id not in row_of for image_id in ids)
    if need_cache and missing == len(ids):
        raise HeadUnavailable("no ranking has embedded these images yet, so there is no head to compare with")
    embedded = 0
    if missing:
        for embedder in embedders if embedders is not None else feature_embedders(context):
            embedded = max(embedded, ensure_embeddings(context, embedder))
        images, cached = load_keyed_features(context, keys)
        row_of = {image.image_id: row for row, image in enumerate(images)}
    return cached[[row_of[image_id] for image_id in ids]], embedded


def head_data(
    context: Context, frame: pd.DataFrame | None = None, with_embedders: bool = True, need_cache: bool = False
) -> HeadData:
    """The labeled images and their features, as the ranking computes them (NotEnoughData if it cannot train).

    with_embedders: build the encoders (a head run needs their files; an estimate only images not cached).
    """
    frame = snapshot(context) if frame is None else frame
    embedders = feature_embedders(context) if with_embedders else None
    keys = [embedder.key for embedder in embedders] if embedders else scorer_keys(wanted_scorer(context))
    raw, embedded_now = snapshot_embeddings(context, frame, keys, embedders, need_cache)
    # Standardised over the snapshot's images, both splits: no label takes part, so nothing leaks.
    features, mean, std = standardised_head_features(raw)
    return HeadData(frame, features, mean, std, embedders or [], embedded_now)


def _split(data: HeadData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    valid = data.frame["is_valid"].to_numpy()
    return ~valid, valid, data.frame["label"].to_numpy()


@dataclass(frozen=True)
class HeadEstimate:
    """A head fitted on today's train split, and its error on today's validation split."""

    error: float
    valid_count: int
    seconds: float
    embedded_now: int


def head_estimate(context: Context, frame: pd.DataFrame | None = None) -> HeadEstimate:
    """Fit the head on today's train split and measure it on the validation split, from cached embeddings.

    The gate's baseline for a fine-tune, and the loop's test of whether a new head is worth a version. A
    validation image whose class the head never saw counts as an error, as at the gate. HeadUnavailable
    when no ranking has embedded the images yet.
    """
    started = time.monotonic()
    data = head_data(context, frame, with_embedders=False, need_cache=True)
    train, valid, labels = _split(data)
    head = fit_head(data.features[train], labels[train])
    wrong = head.predict(data.features[valid]) != labels[valid]
    return HeadEstimate(float(wrong.mean()), int(valid.sum()), time.monotonic() - started, data.embedded_now)


def encoder_graphs(context: Context, embedders: list) -> list[EncoderGraph]:
    """Each embedder's ONNX file and inputs, for compose_head; HeadUnavailable when one cannot join a graph."""
    graphs = []
    for embedder in embedders:
        if isinstance(embedder, Embedder):
            path = context.settings.data_dir / "embedder" / f"{embedder.key}.onnx"
            graphs.append(EncoderGraph(path, embedder.size, tuple(embedder.spec.mean), tuple(embedder.spec.std)))
        elif isinstance(embedder, FileEmbedder):
            if embedder._one_at_a_time:
                raise HeadUnavailable(
                    f"the embedding model {embedder.path} takes one image per run (its batch axis is fixed "
                    "at 1), so a head on its embeddings cannot serve batches; export it with a dynamic batch "
                    "axis, or fine-tune instead"
                )
            graphs.append(
                EncoderGraph(
                    embedder.path, embedder.size, embedder.mean, embedder.std, embedder._input, embedder._output
                )
            )
        else:  # pragma: no cover - feature_embedders makes only these two
            raise HeadUnavailable(f"a head cannot be built on {type(embedder).__name__}")
    return graphs


def _report(context: Context, run_id: int, phase: str) -> bool:
    """Show the phase on the run's progress; True when the run was asked to cancel."""
    return run_db.update_progress(context.database, run_id, {"phase": phase, "history": []}) == "cancelling"


def train_head(context: Context, run_id: int) -> str | None:
    """The worker's head run: fit, write the version (one ONNX graph), judge and register it; None if cancelled."""
    from training.candidates import free_version_name, register_candidate

    database = context.database
    run = run_db.get_run(database, run_id)
    started = time.monotonic()
    frame = snapshot(context)
    run_db.start_run(database, run_id, "cpu", len(frame))
    if _report(context, run_id, "embeddings"):
        run_db.finish_run(database, run_id, "cancelled")
        return None
    data = head_data(context, frame)
    graphs = encoder_graphs(context, data.embedders)
    if _report(context, run_id, "fitting"):
        run_db.finish_run(database, run_id, "cancelled")
        return None
    train, valid, labels = _split(data)
    head = fit_head(data.features[train], labels[train])
    classes = [str(name) for name in head.classes_]
    fit_seconds = time.monotonic() - started

    # Validation metrics over every class either split holds; the head gives 0 to a class it never saw.
    known = sorted(set(classes) | set(labels[valid]))
    probabilities = np.zeros((int(valid.sum()), len(known)))
    probabilities[:, [known.index(name) for name in classes]] = head.predict_proba(data.features[valid])
    targets = np.searchsorted(known, labels[valid])
    metrics: dict = {"classes": classes, **summarize(probabilities, targets, known)}
    metrics.update(
        kind=run_db.HEAD,
        head={
            "C": HEAD_C,
            "encoders": [embedder.key for embedder in data.embedders],
            "features": int(data.features.shape[1]),
            "embedded_now": data.embedded_now,
        },
        seconds=round(fit_seconds, 1),
        snapshot=snapshot_digest(frame),
        train_count=int(train.sum()),
        class_counts=class_counts(frame),
    )
    run_db.record_metrics(database, run_id, metrics)
    if _report(context, run_id, "exporting"):
        run_db.finish_run(database, run_id, "cancelled")
        return None

    version = free_version_name(context, f"v{run_id}")

    def fill(folder) -> dict:
        inputs = compose_head(graphs, data.mean, data.std, head.coef_, head.intercept_, folder / ONNX_FILE)
        (folder / CLASSES_FILE).write_text(json.dumps(classes))
        _check_graph(folder, inputs, data, head)
        return {
            "kind": run_db.HEAD,
            "run_id": run_id,
            "arch": run.arch,
            "size": max(given["size"] for given in inputs),
            "mean": inputs[0]["mean"],
            "std": inputs[0]["std"],
            "inputs": inputs,
            "classes": classes,
            "onnx": True,
            "device": "cpu",
            "head": metrics["head"],
            "metrics": {k: metrics[k] for k in ("error_rate", "valid_count", "per_class_accuracy", "confusion_matrix")},
            "data": {
                "images": len(frame),
                "snapshot": metrics["snapshot"],
                "class_counts": metrics["class_counts"],
                "last_decision_id": run_db.get_run(database, run_id).last_decision_id,
            },
        }

    path = write_version(context, version, fill)
    metrics["seconds"] = round(time.monotonic() - started, 1)
    run_db.record_metrics(database, run_id, metrics)
    register_candidate(context, run_id, version, path, metrics, run.params, run_db.HEAD)
    return version


def _check_graph(folder, inputs: list[dict], data: HeadData, head) -> None:
    """The written graph must give the fitted head's probabilities on real images (a few of them)."""
    from models.onnx_cpu import cpu_session
    from models.predictor import softmax, stacked
    from models.preprocess import prepare

    rows = np.arange(min(CHECKED_IMAGES, len(data.frame)))
    prepared = []
    for path in data.frame["path"].to_numpy()[rows]:
        with Image.open(path) as image:
            image.load()
            prepared.append(tuple(prepare(image, given["size"], given["mean"], given["std"]) for given in inputs))
    session = cpu_session(folder / ONNX_FILE, 1)
    feeds = {given["name"]: batch for given, batch in zip(inputs, stacked(prepared), strict=True)}
    from_graph = softmax(session.run(None, feeds)[0])
    expected = head.predict_proba(data.features[rows])
    if expected.shape[1] == 1 or from_graph.shape != expected.shape:
        raise ValueError(f"the head graph gives {from_graph.shape} probabilities where {expected.shape} were fitted")
    difference = float(np.abs(from_graph - expected).max())
    if difference > MAX_GRAPH_DIFFERENCE:
        raise ValueError(f"the head graph and the fitted head disagree by {difference:.2e} on the same images")
