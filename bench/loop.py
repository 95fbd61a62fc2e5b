"""The whole loop on the demo digits, driven by the real scheduler: decisions → rescore → retrain → promote.

1. Imports the demo (10% of labels flipped), trains v1 (a real worker process) and lets the quick loop
   score the queue.
2. An automated expert reviews the top --decisions items of the queue: relabels the flipped ones to
   their true digit, keeps the rest. `requeue_seconds`: from the last decision until the queue
   reflects heads retrained on those decisions (the debounce is part of it; --debounce sets it).
3. Those decisions reach the policy's retrain threshold, so the scheduler starts a full retrain; the
   gate compares it with v1 on today's validation labels, and the quick loop rescores after promotion.

`recall_before` / `recall_after`: the share of the labels that are still wrong found in the top 10% of
the queue, before the expert's decisions and after the scheduled retrain (the ranking comes from
cross-validated heads on cached embeddings, so it changes through cleaned labels and new heads).
Last line: one JSON object.

    .venv/bin/python bench/loop.py [--decisions 50] [--debounce 5] [--size 128 --freeze-epochs 1 --epochs 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import open_instance, print_table

from context import Context
from db import decisions as decision_db
from db import images as image_db
from db import model_versions as version_db
from db import runs as run_db
from db import users as user_db
from db.queue import QueueFilters
from labeling import review
from labeling.imports.demo import import_demo, read_flipped
from training.launcher import launch
from training.scheduler import LoopPolicy, LoopScheduler, last_rescore, save_policy


def wait_for(condition, timeout_s: float, what: str):
    """Poll until condition() is truthy; raise after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"waited {timeout_s} s for {what}")


def still_wrong(context: Context, flipped: dict) -> set[int]:
    """Ids of active images whose label is still the flipped one."""
    return {
        row.id
        for row in image_db.iter_active_labeled(context.database)
        if row.content_hash in flipped and row.label == flipped[row.content_hash][1]
    }


def expert_of(context: Context):
    """The bench's expert account."""
    return user_db.get_user(context.database, "bench-expert")


def recall_at_10pct(context: Context, flipped: dict) -> float:
    """Share of the still-wrong labels among the top 10% of the unreviewed queue."""
    wrong = still_wrong(context, flipped)
    page = review.queue_page(context, expert_of(context), QueueFilters(reviewed=False), limit=100_000)
    top = {item.image_id for item in page.items[: len(page.items) // 10]}
    return len(top & wrong) / len(wrong) if wrong else 1.0


def wait_for_run(context: Context, run_id: int) -> run_db.RunRow:
    """Until the run ends; print its progress now and then."""
    shown = 0.0
    while (run := run_db.get_run(context.database, run_id)).status in run_db.ACTIVE_STATUSES:
        if time.monotonic() - shown > 15:
            print(f"  run {run_id}: {run.status} {run.progress.get('phase', '')} epoch {run.progress.get('epoch', '')}")
            shown = time.monotonic()
        time.sleep(1)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=50)
    parser.add_argument("--debounce", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--freeze-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        context = open_instance(Path(temp) / "data")
        import_demo(context)
        flipped = read_flipped(context.settings.data_dir)
        expert = user_db.add_user(context.database, "bench-expert", "expert", "bench-password")
        policy = LoopPolicy(
            first_model=False,  # v1 is launched below, by hand, to time it
            debounce_s=args.debounce,
            retrain_after_decisions=args.decisions,
            size=args.size,
            freeze_epochs=args.freeze_epochs,
            epochs=args.epochs,
        )
        save_policy(context, policy)
        loop = LoopScheduler(context, tick_s=1.0, retrain_check_s=2.0)
        loop.start()
        try:
            print("training v1 …")
            v1 = wait_for_run(context, launch(context, "manual", **policy.training_params()))
            assert v1.status == "succeeded", v1.error
            wait_for(lambda: last_rescore(context).get("model_version") == f"v{v1.id}", 600, "the first scoring pass")
            recall_before = recall_at_10pct(context, flipped)
            wrong_before = len(still_wrong(context, flipped))

            print(f"the expert reviews the top {args.decisions} …")
            fixed = 0
            for _ in range(args.decisions):
                item = review.next_item(context, expert, QueueFilters())
                row = image_db.get_image(context.database, item.image_id)
                truth = flipped.get(row.content_hash)
                action = "relabel" if truth and row.label == truth[1] else "keep"
                review.decide(
                    context, expert, item.image_id, action, expected_last_id=item.last_decision_id,
                    new_label=truth[0] if action == "relabel" else None,
                )  # fmt: skip
                fixed += action == "relabel"
            last_decision = decision_db.newest_decision(context.database).id
            decided_at = time.monotonic()
            wait_for(lambda: last_rescore(context).get("decision_id") == last_decision, 600, "the quick loop")
            requeue_seconds = time.monotonic() - decided_at
            quick_pass_seconds = last_rescore(context)["seconds"]

            print("waiting for the scheduled retrain …")
            run = wait_for(
                lambda: next((r for r in run_db.list_runs(context.database) if r.trigger == "decisions"), None),
                120,
                "the decision-triggered retrain",
            )
            run = wait_for_run(context, run.id)
            assert run.status == "succeeded", run.error
            promoted = version_db.promoted_version(context.database).version
            wait_for(lambda: last_rescore(context).get("model_version") == promoted, 600, "the rescore after promotion")
            recall_after = recall_at_10pct(context, flipped)
            gate = run.metrics["gate"]
            total_images = image_db.count_images(context.database)
        finally:
            loop.stop()
            context.database.dispose()

    print_table(
        f"The loop on {total_images} demo digits ({len(flipped)} flipped), scheduler-driven",
        ["step", "value"],
        [
            ["labels fixed by the expert", f"{fixed} of {args.decisions} reviewed"],
            ["seconds until the queue re-ranked", requeue_seconds],
            ["… of which the quick pass itself", quick_pass_seconds],
            ["still-wrong labels in the top 10%, before", f"{recall_before:.3f} of {wrong_before}"],
            ["… after the scheduled retrain", f"{recall_after:.3f} of {wrong_before - fixed}"],
            ["gate", gate["reason"]],
            ["promoted", promoted],
        ],
    )
    print(
        json.dumps(
            {
                "requeue_seconds": round(requeue_seconds, 2),
                "quick_pass_seconds": quick_pass_seconds,
                "recall_before": round(recall_before, 4),
                "recall_after": round(recall_after, 4),
                "debounce_s": args.debounce,
                "fixed": fixed,
                "v1_error": gate["incumbent_error"],
                "v2_error": gate["candidate_error"],
                "promoted": promoted,
            }
        )
    )


if __name__ == "__main__":
    main()
