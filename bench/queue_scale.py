"""Review-queue speed at scale: next item (with its lease) and a decision write, over 100,000 scored images.

Seeds a fresh database with --images image rows (no files: the queue only reads rows) and one scoring
pass, then times an expert taking the next item and deciding it, --samples times. Runs on a temporary
SQLite file and, when it answers, on PostgreSQL (a schema of its own, dropped afterwards).
Last line: one JSON object; its top-level figures are the slower of the two databases.

    .venv/bin/python bench/queue_scale.py [--images 100000] [--samples 300] [--postgres-url URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import add_database_arguments, bench_databases, percentile_ms, print_table
from tqdm import tqdm

from context import Context
from db import images as image_db
from db import scores as score_db
from db import users as user_db
from db.queue import QueueFilters
from labeling import review
from labeling.ranking.scoring import scorer_name
from settings import Settings

CLASSES = [str(digit) for digit in range(10)]
SEED_CHUNK = 10_000


def seed(context: Context, images: int, scorer: str = scorer_name()) -> None:
    """images rows with labels and one scoring pass (stored under scorer) over them."""
    rng = np.random.default_rng(0)
    for start in tqdm(range(0, images, SEED_CHUNK), desc="seeding images", unit="chunk"):
        image_db.add_images_bulk(
            context.database,
            [
                image_db.NewImage(
                    content_hash=f"{index:064x}",
                    stored_path=f"images/{index}.png",
                    thumb_path=f"thumbs/{index}.png",
                    original_name=f"{index}.png",
                    source="bench",
                    format="PNG",
                    byte_size=1000,
                    width=64,
                    height=64,
                    label=CLASSES[index % len(CLASSES)],
                    split="valid" if index % 5 == 0 else "train",
                    batch_id=None,
                )
                for index in range(start, min(start + SEED_CHUNK, images))
            ],
        )
    scores = [
        score_db.NewScore(
            image_id=image_id,
            score=float(value),
            given_label=CLASSES[(image_id - 1) % len(CLASSES)],
            predicted_label=CLASSES[image_id % len(CLASSES)],
            given_probability=float(1 - value),
            top=[[CLASSES[image_id % len(CLASSES)], float(value)]],
        )
        for image_id, value in zip(range(1, images + 1), rng.random(images), strict=True)
    ]
    score_db.replace_scores(context.database, scorer, scores)


def measure(context: Context, samples: int) -> dict:
    """p50/p99 of taking the next item with a lease, and of deciding it."""
    expert = user_db.add_user(context.database, "bench-expert", "expert", "bench-password")
    next_item, decision = [], []
    for _ in tqdm(range(samples), desc="next item + decision", unit="item"):
        started = time.perf_counter()
        item = review.next_item(context, expert, QueueFilters())
        leased = time.perf_counter()
        review.decide(context, expert, item.image_id, "keep", expected_last_id=item.last_decision_id)
        decided = time.perf_counter()
        next_item.append(leased - started)
        decision.append(decided - leased)
    return {
        "next_item_ms_p50": round(percentile_ms(next_item, 50), 2),
        "next_item_ms_p99": round(percentile_ms(next_item, 99), 2),
        "decision_ms_p50": round(percentile_ms(decision, 50), 2),
        "decision_ms_p99": round(percentile_ms(decision, 99), 2),
    }


def run_on(settings: Settings, images: int, samples: int) -> dict:
    context = Context.open(settings)
    try:
        started = time.monotonic()
        seed(context, images)
        print(f"seeded {images} images and scores in {time.monotonic() - started:.1f} s")
        return measure(context, samples)
    finally:
        context.database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300)
    add_database_arguments(parser)
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as temp:
        for name, settings in bench_databases(Path(temp), args):
            results[name] = run_on(settings, args.images, args.samples)

    keys = ["next_item_ms_p50", "next_item_ms_p99", "decision_ms_p50", "decision_ms_p99"]
    print_table(
        f"Review queue over {args.images} scored images, {args.samples} items taken and decided",
        ["database", *keys],
        [[name, *(figures[key] for key in keys)] for name, figures in results.items()],
    )
    summary = {
        key: max(figures[key] for figures in results.values()) for key in ("next_item_ms_p50", "decision_ms_p50")
    }
    print(json.dumps({"images": args.images, **summary, **results}))


if __name__ == "__main__":
    main()
