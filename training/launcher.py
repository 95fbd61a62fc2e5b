"""Starting training runs in their own process and following them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from context import Context
from db import runs as run_db
from models.specs import DEFAULT_ARCH, resolve_weights
from training.hooks import DeliveryPump, run_failed
from training.params import run_params


def queue_run(
    context: Context, arch: str = DEFAULT_ARCH, trigger: str = "manual", kind: str = run_db.FINETUNE, **overrides
) -> int:
    """Record a queued run after checking the request; TrainingBusy if one is active."""
    params = run_params(kind, **overrides)
    if kind == run_db.FINETUNE:
        resolve_weights(arch, params["weights"])
    return run_db.create_run(context.database, arch, params, trigger, kind)


def spawn_worker(context: Context, run_id: int) -> subprocess.Popen:
    """Start `python -m training.worker RUN_ID` on the same data directory and database."""
    env = {
        **os.environ,
        "LOUPE_DATA_DIR": str(context.settings.data_dir.resolve()),
        "DATABASE_URL": context.settings.resolved_database_url,
    }
    # Loupe is installed (`pip install -e .`, the Makefile does it): the worker imports it like any package.
    return subprocess.Popen([sys.executable, "-m", "training.worker", str(run_id)], env=env)


def fail_run(context: Context, run_id: int, error: str) -> None:
    """Mark the run failed with error (its first line is the sentence people read) and tell the hooks."""
    run_db.finish_run(context.database, run_id, "failed", error)
    run_failed(context, run_db.get_run(context.database, run_id))


def fail_dead_runs(context: Context, stale_after_s: float = run_db.STALE_HEARTBEAT_S) -> list[int]:
    """Mark failed every active run whose worker is gone (db/runs.py says when) and tell the hooks; their ids."""
    failed = run_db.fail_dead_runs(context.database, stale_after_s)
    for run_id in failed:
        run_failed(context, run_db.get_run(context.database, run_id))
    return failed


def wait_for_worker(
    context: Context,
    run_id: int,
    process: subprocess.Popen,
    on_progress: Callable[[run_db.RunRow], None] | None = None,
    poll_s: float = 0.5,
) -> run_db.RunRow:
    """Follow the run until its process ends; a process that died without a word marks the run failed."""
    while process.poll() is None:
        if on_progress:
            on_progress(run_db.get_run(context.database, run_id))
        time.sleep(poll_s)
    run = run_db.get_run(context.database, run_id)
    # A worker that lost the claim to another exits at once; the run is the winner's to finish.
    if run.status in run_db.ACTIVE_STATUSES and run.worker_pid in (None, process.pid):
        fail_run(context, run_id, f"the training process ended with exit code {process.returncode}")
        run = run_db.get_run(context.database, run_id)
    return run


def launch(
    context: Context, trigger: str = "manual", arch: str = DEFAULT_ARCH, kind: str = run_db.FINETUNE, **overrides
) -> int:
    """Queue a run and start its worker; a background thread follows it. TrainingBusy if one is active.

    What the scheduler and the Retrain button call: the web process never waits for training.
    """
    run_id = queue_run(context, arch, trigger, kind, **overrides)
    if context.settings.training_worker == "external":
        return run_id  # `server.py worker`, perhaps on another machine, claims it
    process = spawn_worker(context, run_id)
    threading.Thread(
        target=wait_for_worker, args=(context, run_id, process), name=f"loupe-run-{run_id}", daemon=True
    ).start()
    return run_id


def serve_queued_runs(context: Context, poll_s: float = 2.0, once: bool = False) -> int:
    """`server.py worker`: train queued runs one after another, each in its own process; returns runs done.

    For layouts where the web processes only queue runs (LOUPE_TRAINING_WORKER=external): the training
    slot in the database still allows one run at a time, whoever queued it.
    """
    done = 0
    # Servers' schedulers send hook deliveries too; this one sends them where every server runs without one.
    pump = DeliveryPump(context).start()
    try:
        while True:
            fail_dead_runs(context)
            run_id = run_db.next_queued_run(context.database)
            if run_id is not None:
                wait_for_worker(context, run_id, spawn_worker(context, run_id))
                done += 1
            elif once:
                return done
            else:
                time.sleep(poll_s)
    finally:
        pump.stop()
