"""How fast the review queue finds wrong labels: the demo digits with 10% of labels flipped.

Imports the demo into a temporary instance, embeds every image once (ONNX Runtime), scores it with
cross-validated heads (Loupe's ranking), and replays an expert who reviews the queue from the top.
The lesson's way — a model's in-sample losses on the images it trained on — is measured in the same
run with the same features and head, so the only difference is in-sample versus out-of-sample.
Last line: one JSON object.

    .venv/bin/python bench/noise.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import open_instance, print_table, replay

from db import images as image_db
from labeling.imports.demo import import_demo, read_flipped
from labeling.ranking.scoring import (
    DEFAULT_RANKING,
    FEATURE_SIZES,
    RANKINGS,
    ensure_embeddings,
    feature_embedders,
    fit_head,
    head_features,
    label_error_scores,
    load_features,
    out_of_sample_probabilities,
)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()

    with tempfile.TemporaryDirectory() as temp:
        context = open_instance(Path(temp) / "data")
        import_demo(context)
        flipped_hashes = read_flipped(context.settings.data_dir)
        embedders = feature_embedders(context)
        started = time.monotonic()
        for embedder in embedders:
            ensure_embeddings(context, embedder)
        embed_seconds = time.monotonic() - started
        images, features = load_features(context, embedders)
        features = head_features(features)
        hashes = {row.id: row.content_hash for row in image_db.iter_active_labeled(context.database)}
        context.database.dispose()

    labels = np.array([image.label for image in images])
    flipped = np.array([hashes[image.image_id] in flipped_hashes for image in images])
    started = time.monotonic()
    probabilities, classes = out_of_sample_probabilities(features, labels)
    score_seconds = time.monotonic() - started
    given = np.searchsorted(classes, labels)
    results = {ranking: replay(label_error_scores(probabilities, given, ranking), flipped) for ranking in RANKINGS}

    # The fold split is random: the same ranking under other splits shows how much of a difference is luck.
    other_splits = [
        replay(label_error_scores(out_of_sample_probabilities(features, labels, seed=seed)[0], given), flipped)
        for seed in (1, 2)
    ]
    head = fit_head(features, labels)  # the lesson's way: losses of a model on its own training images
    in_sample = replay(label_error_scores(head.predict_proba(features), given), flipped)  # same order as loss

    rows = [[f"Loupe, out-of-sample, {name}", *(round(v, 3) for v in r.values())] for name, r in results.items()]
    rows.append(["lesson, in-sample top losses", *(round(v, 3) for v in in_sample.values())])
    print_table(
        f"{len(labels)} digits, {int(flipped.sum())} flipped; Lite0 embeddings at {FEATURE_SIZES} px",
        ["ranking", "precision@n", "recall@10%", "recall@20%", "AUROC"],
        rows,
    )
    print(f"embedding {len(labels)} images: {embed_seconds:.1f} s; 5-fold heads: {score_seconds:.1f} s")
    measured_best = max(results, key=lambda name: results[name]["precision_at_n"])
    print(f"best ranking in this run: {measured_best}; the queue uses {DEFAULT_RANKING}")
    best = results[DEFAULT_RANKING]
    split_precisions = [best["precision_at_n"]] + [r["precision_at_n"] for r in other_splits]
    print(f"{DEFAULT_RANKING} precision@n over fold splits 0, 1, 2: {', '.join(f'{p:.3f}' for p in split_precisions)}")
    print(
        json.dumps(
            {
                "precision_at_n": round(best["precision_at_n"], 4),
                "recall_at_10pct": round(best["recall_at_10pct"], 4),
                "recall_at_20pct": round(best["recall_at_20pct"], 4),
                "auroc": round(best["auroc"], 4),
                "in_sample_precision_at_n": round(in_sample["precision_at_n"], 4),
                "precision_at_n_fold_splits": [round(p, 4) for p in split_precisions],
                "ranking": DEFAULT_RANKING,
                "embed_seconds": round(embed_seconds, 1),
                "score_seconds": round(score_seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
