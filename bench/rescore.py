"""Rescoring time: the cross-validated heads over N images' cached embeddings, on this machine's CPUs.

Embeddings are computed once per image and cached, so after new decisions only the heads retrain.
This embeds the demo digits (1,797 real images, both feature sizes), then tiles their embeddings
with a little noise up to --images rows, and times one full out-of-sample scoring pass.
Last line: one JSON object.

    .venv/bin/python bench/rescore.py [--images 10000]
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

from labeling.demo import import_demo
from labeling.scoring import (
    ensure_embeddings,
    feature_embedders,
    load_features,
    out_of_sample_probabilities,
    standardize,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        context = open_instance(Path(temp) / "data")
        import_demo(context)
        embedders = feature_embedders(context)
        for embedder in embedders:
            ensure_embeddings(context, embedder)
        images, features = load_features(context, embedders)
        context.database.dispose()

    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(images), size=args.images)
    tiled = features[picks] + rng.normal(scale=0.01, size=(args.images, features.shape[1])).astype(np.float32)
    labels = np.array([images[i].label for i in picks])

    started = time.monotonic()
    probabilities, _ = out_of_sample_probabilities(standardize(tiled), labels)
    seconds = time.monotonic() - started
    print_table(
        "One rescoring pass (5-fold logistic-regression heads on cached embeddings)",
        ["images", "features", "classes", "cores", "seconds"],
        [[args.images, tiled.shape[1], len(set(labels)), os.cpu_count(), seconds]],
    )
    print(json.dumps({"images": args.images, "features": int(tiled.shape[1]), "rescore_seconds": round(seconds, 2)}))


if __name__ == "__main__":
    main()
