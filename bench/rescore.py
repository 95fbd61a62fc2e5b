"""Rescoring time: from a batch of 50 decisions to a fully re-ranked queue, at 10,000 images.

Embeddings are computed once per image and cached, so after new decisions only the heads retrain.
This embeds the demo digits (1,797 real images, both feature sizes), then builds an instance of
--images image rows whose cached embeddings are the digits' with a little noise, scores it once,
lets an expert relabel 50 images, and times `labeling.ranking.scoring.rescore` as the scheduler's quick loop
calls it after decisions (one fold split: load embeddings, 5-fold heads, store the pass) until the queue's
first page reads back; then the refining pass the loop runs next (three splits). Last line: one JSON object.

    .venv/bin/python bench/rescore.py [--images 10000] [--decisions 50]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import open_instance, print_table

from db import embeddings as embedding_db
from db import images as image_db
from db import users as user_db
from db.queue import QueueFilters
from labeling import review
from labeling.imports.demo import import_demo
from labeling.ranking.scoring import (
    QUICK_SPLITS,
    ensure_embeddings,
    feature_embedders,
    load_features,
    rescore,
)


def digit_embeddings(temp: Path):
    """The demo digits' labels and their embeddings from every feature embedder."""
    context = open_instance(temp / "digits")
    import_demo(context)
    embedders = feature_embedders(context)
    for embedder in embedders:
        ensure_embeddings(context, embedder)
    images, _ = load_features(context, embedders)
    blocks = [embedding_db.load_embeddings(context.database, embedder.key)[1] for embedder in embedders]
    context.database.dispose()
    return [image.label for image in images], [embedder.key for embedder in embedders], blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        labels, keys, blocks = digit_embeddings(Path(temp))
        context = open_instance(Path(temp) / "scaled")
        rng = np.random.default_rng(0)
        picks = rng.integers(0, len(labels), size=args.images)
        image_db.add_images_bulk(
            context.database,
            [
                image_db.NewImage(f"{i:064x}", f"images/{i}.png", f"thumbs/{i}.png", f"{i}.png", "bench", "PNG",
                                  1000, 64, 64, labels[pick], "valid" if i % 5 == 0 else "train", None)
                for i, pick in enumerate(picks)
            ],
        )  # fmt: skip
        ids = list(range(1, args.images + 1))
        for key, block in zip(keys, blocks, strict=True):
            noisy = block[picks] + rng.normal(scale=0.01, size=(args.images, block.shape[1])).astype(np.float32)
            for start in range(0, args.images, 2000):
                embedding_db.store_embeddings(
                    context.database, key, ids[start : start + 2000], noisy[start : start + 2000]
                )
        first = rescore(context)
        expert = user_db.add_user(context.database, "bench-expert", "expert", "bench-password")
        page = review.queue_page(context, expert, QueueFilters(), limit=args.decisions)
        for item in page.items:
            review.decide(
                context, expert, item.image_id, "relabel",
                expected_last_id=item.last_decision_id, new_label=item.predicted_label,
            )  # fmt: skip

        started = time.monotonic()
        result = rescore(context, splits=QUICK_SPLITS)
        top = review.queue_page(context, expert, QueueFilters(), limit=20)
        seconds = time.monotonic() - started
        refined = rescore(context)
        context.database.dispose()

    assert result.scored == args.images and top.items
    print_table(
        f"Rescoring after {args.decisions} relabels (5-fold logistic-regression heads on cached embeddings)",
        ["images", "features", "cores", "first pass s", "quick rescore s", "refining pass s"],
        [
            [
                args.images,
                sum(block.shape[1] for block in blocks),
                os.cpu_count(),
                first.seconds,
                seconds,
                refined.seconds,
            ]
        ],
    )
    print(
        json.dumps(
            {
                "images": args.images,
                "decisions": args.decisions,
                "seconds": round(seconds, 2),
                "refined_seconds": round(refined.seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
