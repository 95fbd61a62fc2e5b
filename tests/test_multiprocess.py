"""The layout for users who outgrow one box: two app processes and one training worker on one PostgreSQL.

Both app processes run the scheduler; decisions arrive through both; exactly one run is trained (by
the separate worker), and both processes end up serving the new version.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from conftest import ADMIN, EXPERT, free_port, open_context, server_answers, wait_until
from training_fixtures import ROOT, write_shapes

from db import images as image_db
from db import runs as run_db
from db import users as user_db
from labeling.imports.ingest import import_paths
from training.scheduler import LoopPolicy, last_rescore, save_policy


def test_two_app_processes_and_one_worker_share_postgres(tmp_path, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("this layout is for PostgreSQL")
    data_dir = tmp_path / "data"
    context = open_context(data_dir, database_url)
    import_paths(context, [write_shapes(tmp_path / "shapes", per_class=16)])
    user_db.add_user(context.database, ADMIN[0], "admin", ADMIN[1])
    user_db.add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    save_policy(
        context,
        # The run under test is the decision-triggered one, so the first model does not start by itself.
        LoopPolicy(
            debounce_s=1,
            first_model=False,
            retrain_after_decisions=2,
            freeze_epochs=1,
            epochs=1,
            size=64,
            tolerance=1.0,
        ),
    )
    env = {
        **os.environ,
        "LOUPE_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "LOUPE_TRAINING_WORKER": "external",
        "LOUPE_SCHEDULER_TICK_S": "0.5",
        "LOUPE_RETRAIN_CHECK_S": "0.5",
    }
    ports = [free_port(), free_port()]
    server = [sys.executable, str(ROOT / "server.py")]
    commands = [[*server, "serve", "--port", str(port)] for port in ports] + [[*server, "worker", "--poll-s", "0.5"]]
    logs = [tmp_path / f"process-{number}.log" for number in range(len(commands))]
    processes = [
        subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
        for command, log in zip(commands, logs, strict=True)
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        wait_until(lambda: all(server_answers(base) for base in bases), 120, what="both app processes")
        ids = [row.id for row in image_db.iter_active_labeled(context.database)][:2]
        for base, image_id in zip(bases, ids, strict=True):  # one decision through each process
            answer = httpx.post(f"{base}/api/decisions", auth=EXPERT, json={"image_id": image_id, "action": "keep"})
            assert answer.status_code == 200, answer.text

        run = wait_until(
            lambda: next((r for r in run_db.list_runs(context.database) if r.status == "succeeded"), None),
            300,
            interval=0.5,
            what="the worker to train the decision-triggered run",
        )
        assert [r.id for r in run_db.list_runs(context.database)] == [run.id]  # two schedulers, one run
        assert run.trigger == "decisions" and run.worker_pid is not None  # trained by the worker's child

        def both_serve_the_new_version():
            versions = {httpx.get(f"{base}/api/health", timeout=5).json()["model_version"] for base in bases}
            return versions == {f"v{run.id}"}

        wait_until(both_serve_the_new_version, 60, interval=0.5, what="both processes to swap in the new version")
        wait_until(
            lambda: last_rescore(context).get("model_version") == f"v{run.id}",
            120,
            interval=0.5,
            what="the rescore after promotion",
        )
        queue = httpx.get(f"{bases[1]}/api/queue", auth=EXPERT, params={"reviewed": "true"}).json()
        assert {item["image_id"] for item in queue["items"]} == set(ids)  # both processes' decisions, one queue
    except AssertionError:
        for command, log, process in zip(commands, logs, processes, strict=True):  # what each process said
            print(f"--- {' '.join(command[1:])} (exit code {process.poll()}):\n{log.read_text()[-4000:]}")
        raise
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        context.database.dispose()
