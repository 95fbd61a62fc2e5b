"""Admin handlers called directly with a Gradio request: the training timer follows runs nobody chose."""

from __future__ import annotations

import gradio as gr
import pytest

from db import runs as run_db
from db.users import add_user
from training.launcher import queue_run
from ui.admin_training import make_handlers


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
    idle = tick(admin, None, False)
    assert idle[-1] is False and all(isinstance(part, type(gr.skip())) for part in idle[:-1])

    with pytest.raises(gr.Error, match="admin role"):
        tick(gr.Request(username="bob"), None, True)
