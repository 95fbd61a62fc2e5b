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
    assert f"Run {run_id}: queued" in shown["summary"] and shown["was_active"] is True
    run_db.finish_run(context.database, run_id, "failed", "the worker ran out of memory")
    shown = tick(admin, None, True)  # the tick after the end still refreshes once
    assert f"Run {run_id}: failed" in shown["summary"] and "ran out of memory" in shown["summary"]
    assert shown["was_active"] is False
    table = runs_table(context, run_db.list_runs(context.database))
    assert table.loc[0, "status"] == "failed" and table.loc[0, "gate or error"] == "the worker ran out of memory"
    assert not tick(admin, None, False)  # idle: nothing to show, was_active stays False

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


def test_models_and_users_handlers_name_their_outputs_and_show_refusals_as_sentences(context):
    from ui import admin_models, admin_users

    add_user(context.database, "alice", "admin", "alice-password")
    admin = gr.Request(username="alice")
    refresh, promote, rollback, save = admin_models.make_handlers(context, None)
    shown = refresh(admin)
    assert shown["size"] == 128 and shown["cron"] == "" and "scheduler is **off**" in shown["status"]
    with pytest.raises(gr.Error, match="image size must be a whole number"):
        save(admin, True, 20, 0, "", 0.01, 1, 2, "big")
    with pytest.raises(gr.Error, match="positive multiple of 32"):  # BadPolicy, shown by shows_refusals
        save(admin, True, 20, 0, "", 0.01, 1, 2, 100)
    assert save(admin, True, 20, 0, "", 0.01, 1, 2, 96)["size"] == 96
    with pytest.raises(gr.Error, match="no version 'v-none' to promote"):  # a VersionError
        promote(admin, "v-none")
    with pytest.raises(gr.Error, match="no earlier promoted version"):
        rollback(admin)

    refresh, add, *_ = admin_users.make_handlers(context)
    shown = add(admin, "carol", "expert", "carol-password")
    assert "carol" in set(shown["table"]["name"]) and shown["new_password"] == ""
    with pytest.raises(gr.Error, match="unknown role '&lt;b&gt;'"):  # UserError, its quoted input HTML-escaped
        add(admin, "dave", "<b>", "dave-password")


def test_training_handlers_refuse_bad_numbers_with_a_sentence(context):
    add_user(context.database, "alice", "admin", "alice-password")
    admin = gr.Request(username="alice")
    refresh, _tick, retrain, _cancel, retry, _train_head = make_handlers(context)
    with pytest.raises(gr.Error, match="Choose a run from the list"):
        refresh(admin, "latest")
    with pytest.raises(gr.Error, match="frozen epochs must be a whole number"):
        retrain(admin, 1, None, "", False)
    with pytest.raises(gr.Error, match="learning rate must be a number"):
        retrain(admin, 1, 1, "fast", False)
    with pytest.raises(gr.Error, match="failed or cancelled run"):
        retry(admin, None)
    assert refresh(admin, None)["summary"] == "Choose a run."
