"""Training speed: seconds per epoch per 1,000 training images, frozen and unfrozen, on this machine.

Imports the demo digits (or the first --images of them) into a temporary instance and runs one real
training run through the worker process (1 frozen + 1 unfrozen epoch at the default size), on the
GPU when there is one. Last line: one JSON object.

    .venv/bin/python bench/epoch_speed.py [--size 128] [--find-lr]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import open_instance, print_table

from labeling.imports.demo import import_demo
from training.launcher import queue_run, spawn_worker, wait_for_worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--find-lr", action="store_true", help="also time the learning-rate finder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        context = open_instance(Path(temp) / "data")
        import_demo(context)
        run_id = queue_run(
            context, size=args.size, freeze_epochs=1, epochs=1, batch_size=args.batch_size, find_lr=args.find_lr
        )
        run = wait_for_worker(context, run_id, spawn_worker(context, run_id))
        context.database.dispose()
    if run.status != "succeeded":
        raise SystemExit(f"training failed: {run.error}")
    train_images = run.metrics["train_count"]
    per_1000 = {h["phase"]: h["seconds"] * 1000 / train_images for h in run.metrics["history"]}
    rows = [
        [phase, run.device, args.size, train_images, seconds, per_1000[phase]]
        for phase, seconds in ((h["phase"], h["seconds"]) for h in run.metrics["history"])
    ]
    print_table(
        "One epoch of the demo digits (train split; includes the validation pass)",
        ["phase", "device", "px", "train images", "seconds", "s per 1,000"],
        rows,
    )
    print(f"error rate after 2 epochs: {run.metrics['error_rate']:.1%}; whole run {run.metrics['seconds']} s")
    summary = {
        "device": run.device,
        "size": args.size,
        "train_images": train_images,
        "frozen_s_per_1000": round(per_1000["frozen"], 1),
        "unfrozen_s_per_1000": round(per_1000["unfrozen"], 1),
        "error_rate": round(run.metrics["error_rate"], 4),
        "run_seconds": run.metrics["seconds"],
    }
    if "lr_find" in run.metrics:
        summary["suggested_lr"] = run.metrics["lr_find"]["suggested_lr"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
