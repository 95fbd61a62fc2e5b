"""Which model the loop serves, on the ranking's four datasets: a head on the cached embeddings, a fine-tune,
and what the gate chose, each measured in the same run.

For each dataset of bench/ranking_data.py (digits, scripts, icons, emoji: docs/ranking-datasets.md), in a
fresh temporary instance: import the images with their labels (Loupe draws each image's split from its
hash), rank them once (the quick loop's pass, which caches the embeddings), then train as the loop does,
each run in the worker process and judged by the gate: a head run, then a fine-tune with the defaults
(training/params.py). The gate, not this script, decides what is served. `--before` then also trains
the fine-tune default of before issue 17 (128 px, 1 + 2 epochs, lr 2e-3: still the default, so it shows
run-to-run noise unless the defaults change), and `--finetune k=v,...` fine-tunes with
other settings (e.g. `epochs=6,lr=0.005`): those runs are not promoted (their error is the run's own
validation pass), so they leave what the gate chose alone.

Per dataset: head_error, finetune_error (each version's error on the validation split, against the labels
as given, as the gate measured it), served_error (the version promoted at the end) and each run's seconds.
Last line: one JSON object with the means and worst_served_minus_head.

    .venv/bin/python bench/train.py [--only digits,icons] [--before] [--finetune epochs=6,lr=0.005 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import open_instance, print_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ranking_data import DATASETS, cache_dir, load  # noqa: E402

from db import model_versions as version_db  # noqa: E402
from db import runs as run_db  # noqa: E402
from labeling.imports.ingest import import_paths  # noqa: E402
from labeling.ranking.scoring import QUICK_SPLITS, rescore  # noqa: E402
from training.launcher import queue_run, spawn_worker, wait_for_worker  # noqa: E402
from training.params import DEFAULTS  # noqa: E402

BEFORE = {"size": 128, "freeze_epochs": 1, "epochs": 2, "lr": 2e-3}  # the fine-tune default until issue 17


def parse_settings(text: str) -> dict:
    """'epochs=6,lr=0.005' → {'epochs': 6, 'lr': 0.005}."""
    settings = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        number = float(value)
        settings[name.strip()] = int(number) if number.is_integer() and name.strip() != "lr" else number
    return settings


def train(context, kind: str, **settings) -> run_db.RunRow:
    """One run through the worker process, as the loop starts it; SystemExit if it does not succeed."""
    run_id = queue_run(context, kind=kind, trigger="bench", **settings)
    run = wait_for_worker(context, run_id, spawn_worker(context, run_id))
    if run.status != "succeeded":
        raise SystemExit(f"{kind} run {run_id} {run.status}: {(run.error or '').splitlines()[:1]}")
    return run


def measure(dataset: str, extra_finetunes: list[dict]) -> dict:
    """One dataset in a fresh instance: rank, head, fine-tune(s); the gate's numbers for each."""
    load(dataset)  # builds the dataset on first use
    with tempfile.TemporaryDirectory() as temp:
        context = open_instance(Path(temp) / "data")
        import_paths(context, [cache_dir() / dataset])  # class folders; manifest.json is refused as not an image
        started = time.monotonic()
        rescore(context, splits=QUICK_SPLITS)
        ranked_s = time.monotonic() - started
        head = train(context, run_db.HEAD)
        finetunes = [train(context, run_db.FINETUNE)]
        promoted = version_db.promoted_version(context.database)  # the gate's choice between the two
        finetunes += [train(context, run_db.FINETUNE, promote=False, **settings) for settings in extra_finetunes]
        context.database.dispose()

    def gate(run: run_db.RunRow) -> dict:
        return run.metrics["gate"]

    served = next(run for run in (head, *finetunes) if gate(run)["candidate"] == promoted.version)
    return {
        "dataset": dataset,
        "valid_images": gate(head)["valid_images"],
        "train_images": head.metrics["train_count"],
        "rank_s": round(ranked_s, 1),
        "head_error": gate(head)["candidate_error"],
        "head_s": round(head.seconds, 1),
        "finetune_error": gate(finetunes[0])["candidate_error"],
        "finetune_s": round(finetunes[0].seconds, 1),
        "finetune_promoted": gate(finetunes[0])["promote"],
        "extra_finetunes": [
            {"settings": settings, "error": run.metrics["error_rate"], "s": round(run.seconds, 1)}
            for settings, run in zip(extra_finetunes, finetunes[1:], strict=True)
        ],
        "served": "head" if served is head else "finetune",
        "served_error": gate(served)["candidate_error"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated datasets (default: all four)")
    parser.add_argument("--before", action="store_true", help="also the fine-tune default before issue 17")
    parser.add_argument("--finetune", action="append", default=[], help="extra fine-tune settings, k=v,...")
    args = parser.parse_args()
    datasets = args.only.split(",") if args.only else list(DATASETS)
    extra = ([BEFORE] if args.before else []) + [parse_settings(text) for text in args.finetune]
    results = []
    for dataset in datasets:
        results.append(measure(dataset, extra))
        print(json.dumps(results[-1]), flush=True)

    def pct(value: float) -> str:
        return f"{value:.1%}"

    print_table(
        f"Served model per dataset (fine-tune default: {DEFAULTS.size} px, {DEFAULTS.freeze_epochs} frozen + "
        f"{DEFAULTS.epochs} unfrozen epochs, lr {DEFAULTS.lr:g}; CPU)",
        ["dataset", "train", "valid", "head", "head s", "fine-tune", "fine-tune s", "served", "served error"],
        [
            [
                r["dataset"], r["train_images"], r["valid_images"], pct(r["head_error"]), r["head_s"],
                pct(r["finetune_error"]), r["finetune_s"], r["served"], pct(r["served_error"]),
            ]
            for r in results
        ],
    )  # fmt: skip
    for settings in extra:
        rows = [
            [r["dataset"], pct(e["error"]), e["s"]]
            for r in results
            for e in r["extra_finetunes"]
            if e["settings"] == settings
        ]
        print_table(f"Fine-tune with {settings}", ["dataset", "error", "seconds"], rows)

    def mean(key: str) -> float:
        return round(sum(r[key] for r in results) / len(results), 4)

    summary = {
        "datasets": [r["dataset"] for r in results],
        "device": "cpu",
        "finetune_defaults": {
            "size": DEFAULTS.size,
            "freeze_epochs": DEFAULTS.freeze_epochs,
            "epochs": DEFAULTS.epochs,
            "lr": DEFAULTS.lr,
        },  # fmt: skip
        "mean_head_error": mean("head_error"),
        "mean_finetune_error": mean("finetune_error"),
        "mean_served_error": mean("served_error"),
        "worst_served_minus_head": round(max(r["served_error"] - r["head_error"] for r in results), 4),
        "mean_head_s": mean("head_s"),
        "mean_finetune_s": mean("finetune_s"),
        "served_kinds": {r["dataset"]: r["served"] for r in results},
    }
    for index, settings in enumerate(extra):
        errors = [r["extra_finetunes"][index]["error"] for r in results]
        name = (
            "finetune_before"
            if settings is BEFORE
            else f"finetune[{','.join(f'{k}={v}' for k, v in settings.items())}]"
        )
        summary[f"mean_{name}_error"] = round(sum(errors) / len(errors), 4)
        summary[f"mean_{name}_s"] = round(sum(r["extra_finetunes"][index]["s"] for r in results) / len(results), 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
