"""The retraining loop with a real scheduler: quick rescoring, decision-triggered retraining, the gate,
one training at a time across threads, and recovery of runs a dead process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import ADMIN, EXPERT, LiveServer, open_context, wait_until
from training_fixtures import ROOT, clone_version, copy_data_dir, open_data_dir, write_shapes

from db import decisions as decision_db
from db import images as image_db
from db import model_versions as version_db
from db import runs as run_db
from db import users as user_db
from db.queue import QueueFilters
from db.scores import top_scores
from labeling import review
from labeling.imports.ingest import import_paths
from labeling.ranking.scoring import FOLD_SPLITS, QUICK_SPLITS, scorer_name
from training.gate import judge
from training.launcher import queue_run, spawn_worker, wait_for_worker
from training.scheduler import (
    BadPolicy,
    LoopPolicy,
    LoopScheduler,
    last_rescore,
    save_policy,
)


@pytest.fixture
def shapes_context(context, tmp_path):
    """The database-parametrised context holding 24 disc and bar images and an expert."""
    import_paths(context, [write_shapes(tmp_path / "shapes", per_class=12)])
    user_db.add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    return context


def test_quick_loop_reranks_once_decisions_go_quiet(shapes_context):
    context = shapes_context
    # No training here: the first model would otherwise start a tick after the scheduler does.
    save_policy(context, LoopPolicy(debounce_s=1.5, retrain_after_decisions=0, first_model=False))
    loop = LoopScheduler(context, tick_s=0.3, retrain_check_s=60)
    loop.start()
    try:
        # The first pass is the quick one (one fold split); the next quiet tick refines it.
        first = wait_until(
            lambda: (s := last_rescore(context)).get("splits") == FOLD_SPLITS and s["rescored_at"],
            120,
            what="the first rescore, refined",
        )
        expert = user_db.get_user(context.database, EXPERT[0])
        page = review.queue_page(context, expert, QueueFilters(), limit=50)
        assert page.total == 24
        item = page.items[0]
        flipped = "bar" if item.label == "disc" else "disc"
        review.decide(
            context, expert, item.image_id, "relabel",
            expected_last_id=item.last_decision_id, new_label=flipped,
        )  # fmt: skip
        time.sleep(0.8)  # inside the debounce: the expert may still be deciding, so no rescore yet
        assert last_rescore(context)["rescored_at"] == first
        state = wait_until(
            lambda: (s := last_rescore(context)).get("rescored_at") != first and s, 60, what="the quick loop"
        )
        assert state["decision_id"] == decision_db.newest_decision(context.database).id
        rescored = {row.image_id: row for row in top_scores(context.database, scorer_name(), limit=100)}
        assert rescored[item.image_id].given_label == flipped  # scored under its new label now
        wait_until(lambda: last_rescore(context).get("splits") == FOLD_SPLITS, 60, what="the refined pass")
    finally:
        loop.stop()


def test_policy_is_checked_before_it_is_stored(context):
    with pytest.raises(BadPolicy, match="crontab"):
        save_policy(context, LoopPolicy(retrain_cron="every night"))
    with pytest.raises(BadPolicy, match="multiple of 32"):
        save_policy(context, LoopPolicy(size=100))
    save_policy(context, LoopPolicy(retrain_cron="0 3 * * *", retrain_after_decisions=0))
    from training.scheduler import load_policy

    assert load_policy(context).retrain_cron == "0 3 * * *"


def test_cron_policy_is_a_stored_job_that_retrains_only_when_something_changed(tmp_path, database_url):
    from sqlalchemy import select

    from db.schema import scheduler_jobs
    from training.scheduler import run_scheduled_retrain

    context = open_context(tmp_path / "data", database_url, training_worker="external")  # runs are only queued
    import_paths(context, [write_shapes(tmp_path / "shapes", per_class=4)])
    expert = user_db.add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    policy = save_policy(
        context,
        LoopPolicy(quick_loop=False, first_model=False, retrain_after_decisions=0, retrain_cron="0 3 * * *"),
    )
    loop = LoopScheduler(context, tick_s=60, retrain_check_s=60)
    loop.start()
    try:
        jobs = dict(loop.jobs())
        assert jobs["scheduled retrain (0 3 * * * UTC)"].endswith("03:00:00+00:00")
    finally:
        loop.stop()
    with context.database.read() as session:  # the job store keeps the jobs for the next start
        assert set(session.scalars(select(scheduler_jobs.c.id))) == {
            "quick_loop",
            "retrain_check",
            "scheduled_retrain",
            "hook_deliveries",
        }

    first = run_scheduled_retrain(context, policy)  # never trained: the night's job starts one
    assert run_db.get_run(context.database, first).trigger == "schedule"
    run_db.finish_run(context.database, first, "succeeded")
    assert run_scheduled_retrain(context, policy) is None  # nothing decided since that run
    image = next(image_db.iter_active_labeled(context.database))
    review.decide(context, expert, image.id, "keep", expected_last_id=None)
    second = run_scheduled_retrain(context, policy)
    assert second is not None and second != first
    context.database.dispose()


def test_two_concurrent_retrain_requests_make_one_run(shapes_context):
    context = shapes_context
    barrier = threading.Barrier(4)
    outcomes: list = []

    def request():
        barrier.wait()
        try:
            outcomes.append(queue_run(context, trigger="manual", size=64))
        except run_db.TrainingBusy as busy:
            outcomes.append(busy)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, run_db.TrainingBusy)]
    assert len(started) == 1 and len(refused) == 3
    assert all(f"training run {started[0]} is queued" in str(r) for r in refused)
    assert [r.id for r in run_db.list_runs(context.database)] == started


def test_run_of_a_killed_worker_is_marked_failed_at_start_up_and_frees_the_slot(trained_dir, tmp_path):
    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))
    run_id = queue_run(context, size=64, epochs=1, freeze_epochs=1, batch_size=8)
    worker = spawn_worker(context, run_id)
    wait_until(lambda: run_db.get_run(context.database, run_id).status == "running", 120, what="the worker")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert run_db.get_run(context.database, run_id).status == "running"  # what a crash leaves behind

    loop = LoopScheduler(context, tick_s=60, retrain_check_s=60)
    loop.start()  # a server starting up after the crash
    loop.stop()
    run = run_db.get_run(context.database, run_id)
    assert run.status == "failed" and f"worker process {worker.pid} is gone" in run.error
    assert version_db.promoted_version(context.database).version == "v1"  # untouched, still loadable
    retried = queue_run(context, trigger="retry", size=64)  # the slot is free again
    assert retried != run_id
    context.database.dispose()


def test_silent_worker_elsewhere_is_failed_but_a_live_one_is_not(context):
    quiet = queue_run(context, size=64)
    assert run_db.fail_dead_runs(context.database, stale_after_s=60) == []  # just queued: give it time
    assert run_db.fail_dead_runs(context.database, stale_after_s=0) == [quiet]
    assert "no sign of life" in run_db.get_run(context.database, quiet).error
    alive = queue_run(context, size=64)
    assert run_db.claim_run(context.database, alive)  # this very process is its worker
    assert run_db.fail_dead_runs(context.database, stale_after_s=60) == []


def test_worse_model_is_kept_as_candidate_with_the_reason(trained_dir, tmp_path):
    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))
    clone_version(context, "v1", "v50")
    folder = context.settings.data_dir / version_db.get_version(context.database, "v50").path
    classes = json.loads((folder / "classes.json").read_text())
    (folder / "classes.json").write_text(json.dumps(classes[::-1]))  # every answer now names the other shape

    verdict = judge(context, "v50", folder, tolerance=0.01)
    assert not verdict.promote
    assert verdict.candidate_error > verdict.incumbent_error + 0.01
    assert verdict.reason.startswith("kept as a candidate: v50 errs on")
    assert verdict.valid_images == len(
        [r for r in image_db.iter_active_labeled(context.database) if r.split == "valid"]
    )
    same = judge(context, "v1", context.settings.data_dir / version_db.get_version(context.database, "v1").path)
    assert same.promote
    context.database.dispose()


def test_decisions_trigger_a_retrain_that_passes_the_gate_and_is_served(trained_dir, tmp_path):
    context = open_data_dir(
        copy_data_dir(trained_dir, tmp_path / "data"), scheduler=True, scheduler_tick_s=0.5, retrain_check_s=0.5
    )
    user_db.add_user(context.database, ADMIN[0], "admin", ADMIN[1])
    user_db.add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    save_policy(
        context,
        LoopPolicy(quick_loop=False, retrain_after_decisions=3, epochs=1, freeze_epochs=1, size=64, tolerance=1.0),
    )
    png = (context.settings.data_dir / image_db.get_image(context.database, 1).stored_path).read_bytes()
    with LiveServer(context) as server:
        assert httpx.post(f"{server.url}/api/predict", files={"file": ("a.png", png)}).json()["model_version"] == "v1"
        ids = [row.id for row in image_db.iter_active_labeled(context.database)][:3]
        for image_id in ids:
            response = httpx.post(
                f"{server.url}/api/decisions", auth=EXPERT, json={"image_id": image_id, "action": "keep"}, timeout=30
            )
            assert response.status_code == 200, response.text
        run = wait_until(
            lambda: next((r for r in run_db.list_runs(context.database) if r.trigger == "decisions"), None),
            30,
            what="a decision-triggered run",
        )
        done = wait_until(
            lambda: (r := run_db.get_run(context.database, run.id)).status not in run_db.ACTIVE_STATUSES and r,
            300,
            interval=1,
            what="the run to end",
        )
        assert done.status == "succeeded", done.error
        assert done.metrics["gate"]["promote"] and done.metrics["gate"]["incumbent"] == "v1"
        assert version_db.promoted_version(context.database).version == f"v{run.id}"

        def served_version():
            answer = httpx.post(f"{server.url}/api/predict", files={"file": ("a.png", png)}).json()
            return answer["model_version"] == f"v{run.id}"

        wait_until(served_version, 30, what="the predictor to swap")
        time.sleep(1.5)  # a few more retrain checks: the same decisions must not start a second run
        assert [r.id for r in run_db.list_runs(context.database)] == [run.id, 1]
    context.database.dispose()


def test_worker_refuses_a_run_that_is_not_waiting(context):
    run_id = queue_run(context, size=64)
    run_db.finish_run(context.database, run_id, "cancelled")
    env = {**os.environ, "LOUPE_DATA_DIR": str(context.settings.data_dir), "DATABASE_URL": context.database.url}
    finished = subprocess.run(
        [sys.executable, "-m", "training.worker", str(run_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert finished.returncode == 2 and "not waiting for a worker" in finished.stderr
    assert run_db.get_run(context.database, run_id).status == "cancelled"


def test_a_run_never_overwrites_a_version_of_the_same_name(trained_dir, tmp_path):
    from training.candidates import free_version_name

    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))
    clone_version(context, "v1", "v7")  # e.g. made by hand, or restored from a backup
    assert free_version_name(context, "v7") == "v7.2"
    assert free_version_name(context, "v8") == "v8"
    context.database.dispose()


def test_a_worker_that_loses_the_claim_leaves_the_winners_run_alone(context):
    run_id = queue_run(context, size=64)
    assert run_db.claim_run(context.database, run_id)  # another worker (this process) has it
    loser = spawn_worker(context, run_id)
    run = wait_for_worker(context, run_id, loser, poll_s=0.1)
    assert loser.returncode == 2
    assert run.status == "queued" and run.worker_pid == os.getpid() and run.error is None


def test_quick_loop_scores_fast_first_then_refines_when_quiet(shapes_context):
    from training.scheduler import quick_loop_due, run_quick_loop

    context = shapes_context
    policy = LoopPolicy(debounce_s=0, retrain_after_decisions=0)
    assert quick_loop_due(context, policy)["splits"] == QUICK_SPLITS  # nothing scored yet: the quick pass
    assert run_quick_loop(context, policy, "test").splits == QUICK_SPLITS
    assert quick_loop_due(context, policy)["splits"] == FOLD_SPLITS  # nothing new since: refine it
    assert run_quick_loop(context, policy, "test").splits == FOLD_SPLITS
    assert quick_loop_due(context, policy) is None  # current and refined


def test_quick_loop_maps_the_refined_pass_and_a_ranking_left_without_a_map(shapes_context):
    from db import dataset_maps as map_db
    from db.schema import DatasetMap
    from training.scheduler import run_quick_loop

    context = shapes_context
    policy = LoopPolicy(debounce_s=0, retrain_after_decisions=0, first_model=False)
    run_quick_loop(context, policy, "test")
    assert map_db.latest_info(context.database) is None  # the quick pass is redone soon: not mapped
    run_quick_loop(context, policy, "test")
    mapped = map_db.latest_info(context.database)
    assert mapped is not None and mapped.n == 24 and mapped.scorer == scorer_name()

    with context.database.write() as session:  # a database from before maps, or a map a decision stopped
        session.query(DatasetMap).delete()
    assert run_quick_loop(context, policy, "test") is None  # nothing to rescore: the quiet tick maps it
    assert map_db.latest_info(context.database).n == 24
