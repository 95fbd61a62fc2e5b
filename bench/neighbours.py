"""Evidence beside the image at scale: the next review item and its look-alikes, over 10,000 embedded images.

Seeds a fresh database like bench/queue_scale.py (image rows without files, one scoring pass), adds
cached embeddings for the serving pass's two embedders (class-structured random vectors of the real
width, 1,408 numbers), builds the neighbour index once (timed on its own), then times an expert taking
the next item and asking for its evidence (nearest confident images of the given and of the predicted
class), --samples times; each item is then kept (not timed) so the next one is new. Runs on a temporary
SQLite file and, when it answers, on PostgreSQL. Last line: one JSON object; top-level figures are the
slower of the two databases. Target: item + neighbours under 150 ms.

    .venv/bin/python bench/neighbours.py [--images 10000] [--samples 50] [--postgres-url URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import add_database_arguments, bench_databases, percentile_ms, print_table
from queue_scale import CLASSES, seed
from tqdm import tqdm

from context import Context
from db import embeddings as embedding_db
from db import users as user_db
from db.queue import QueueFilters
from labeling import review
from labeling.ranking import neighbours
from labeling.ranking.scoring import scorer_keys, scorer_name
from settings import Settings

WIDTH = 1408  # Lite0's four stage ends, mean- and max-pooled, at one size
CHUNK = 1000


def seed_embeddings(context: Context, images: int) -> None:
    """One vector per image and serving embedder: a class centre plus noise, so neighbours have structure."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(len(CLASSES), WIDTH)).astype(np.float32)
    for key in scorer_keys(scorer_name()):
        for start in tqdm(range(0, images, CHUNK), desc=f"embeddings {key}", unit="chunk"):
            ids = list(range(start + 1, min(start + CHUNK, images) + 1))
            classes = [(image_id - 1) % len(CLASSES) for image_id in ids]
            vectors = np.abs(centres[classes] + rng.normal(scale=2.0, size=(len(ids), WIDTH)).astype(np.float32))
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            embedding_db.store_embeddings(context.database, key, ids, vectors)


def measure(context: Context, samples: int) -> dict:
    """Index build time, then p50/p95 of next item + its evidence."""
    expert = user_db.add_user(context.database, "bench-expert", "expert", "bench-password")
    started = time.perf_counter()
    neighbours.current_index(context)
    build_s = time.perf_counter() - started
    timings, evidence, shown = [], [], []
    for _ in tqdm(range(samples), desc="next item + neighbours", unit="item"):
        started = time.perf_counter()
        item = review.next_item(context, expert, QueueFilters())
        leased = time.perf_counter()
        found = review.evidence(context, expert, item.image_id)
        timings.append(time.perf_counter() - started)
        evidence.append(time.perf_counter() - leased)
        shown.append(len(found.given.images) + len(found.predicted.images))
        review.decide(context, expert, item.image_id, "keep", expected_last_id=item.last_decision_id)
    return {
        "index_build_s": round(build_s, 2),
        "item_with_neighbours_ms_p50": round(percentile_ms(timings, 50), 1),
        "item_with_neighbours_ms_p95": round(percentile_ms(timings, 95), 1),
        "neighbours_only_ms_p50": round(percentile_ms(evidence, 50), 1),
        "neighbours_shown_min": int(min(shown)),
    }


def run_on(settings: Settings, images: int, samples: int) -> dict:
    context = Context.open(settings)
    try:
        started = time.monotonic()
        seed(context, images)
        seed_embeddings(context, images)
        print(f"seeded {images} images, scores and embeddings in {time.monotonic() - started:.1f} s")
        return measure(context, samples)
    finally:
        context.database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=50)
    add_database_arguments(parser)
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as temp:
        for name, settings in bench_databases(Path(temp), args):
            results[name] = run_on(settings, args.images, args.samples)

    keys = [
        "index_build_s",
        "item_with_neighbours_ms_p50",
        "item_with_neighbours_ms_p95",
        "neighbours_only_ms_p50",
        "neighbours_shown_min",
    ]
    print_table(
        f"Next review item + look-alikes of both classes over {args.images} embedded images, {args.samples} items",
        ["database", *keys],
        [[name, *(figures[key] for key in keys)] for name, figures in results.items()],
    )
    summary = {key: max(figures[key] for figures in results.values()) for key in keys[:3]}
    print(json.dumps({"images": args.images, "target_ms": 150, **summary, **results}))


if __name__ == "__main__":
    main()
