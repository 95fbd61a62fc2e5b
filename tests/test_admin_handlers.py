"""Admin handlers called directly with a Gradio request: the training timer follows runs nobody chose."""

from __future__ import annotations

import gradio as gr
import pytest

from db import runs as run_db
from db.users import add_user
from training.launcher import queue_run
from ui.admin_training import make_handlers, runs_table


def test_training_timer_follows_a_run_started_elsewhere_and_shows_its_end(context):
    add_user(context.database, "alice", "admin", "alice-password")
    add_user(context.database, "bob", "expert", "bob-password")
    _refresh, tick, *_ = make_handlers(context)
    admin = gr.Request(username="alice")
    run_id = queue_run(context, size=64)  # as the scheduler would; the page has no run chosen

    shown = tick(admin, None, False)
    assert f"Run {run_id}: queued" in shown[2] and shown[-1] is True
    run_db.finish_run(context.database, run_id, "failed", "the worker ran out of memory")
    shown = tick(admin, None, True)  # the tick after the end still refreshes once
    assert f"Run {run_id}: failed" in shown[2] and "ran out of memory" in shown[2] and shown[-1] is False
    table = runs_table(context, run_db.list_runs(context.database))
    assert table.loc[0, "status"] == "failed" and table.loc[0, "gate or error"] == "the worker ran out of memory"
    idle = tick(admin, None, False)
    assert idle[-1] is False and all(isinstance(part, type(gr.skip())) for part in idle[:-1])

    with pytest.raises(gr.Error, match="admin role"):
        tick(gr.Request(username="bob"), None, True)


def test_progress_says_when_training_is_over_and_the_version_is_being_judged(context):
    from ui.admin_training import progress_text

    run_id = queue_run(context, size=64)
    run_db.start_run(context.database, run_id, "cpu", 40)
    run_db.update_progress(
        context.database, run_id, {"phase": "unfrozen", "epoch": 1, "n_epochs": 1, "batch": 3, "n_batches": 3}
    )
    assert progress_text(run_db.get_run(context.database, run_id)) == "unfrozen epoch 1/1, batch 3/3"
    run_db.record_metrics(context.database, run_id, {"error_rate": 0.1})  # the last epoch is done
    assert "comparing it with the promoted one" in progress_text(run_db.get_run(context.database, run_id))
    run_db.finish_run(context.database, run_id, "succeeded")
    assert progress_text(run_db.get_run(context.database, run_id)) == "succeeded"
