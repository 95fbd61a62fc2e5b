"""The first model: the loop trains one by itself when none is promoted and the labeled data can train it,
says why it did not otherwise, never starts twice, and does not retry a failed first run until the data
changed. Runs are only queued here (LOUPE_TRAINING_WORKER=external): the rule is the subject, not the
training (tests/test_browser_first_run.py trains one for real)."""

from __future__ import annotations

import shutil

import httpx
import pytest
from conftest import EXPERT, LiveServer, open_context
from training_fixtures import write_shapes

from db import images as image_db
from db import model_versions as version_db
from db import runs as run_db
from db import users as user_db
from db.stats import DatasetStats
from labeling import review
from labeling.imports.ingest import import_paths
from training.first_model import (
    FIRST_MODEL_PER_CLASS,
    FIRST_MODEL_TRIGGER,
    first_model_data_problem,
    first_model_note,
    first_model_status,
    training_fraction,
)
from training.scheduler import LoopPolicy, run_first_model_check, save_policy
from ui.predict_status import EtaClock, no_model_sentence, status_sentence

POLICY = LoopPolicy(
    size=64, freeze_epochs=1, epochs=1, head_models=False
)  # the fine-tune path; heads: test_head_models.py


@pytest.fixture
def queued_only(tmp_path, database_url):
    """A context on both databases whose runs are only queued (no worker process starts)."""
    context = open_context(tmp_path / "data", database_url, training_worker="external")
    yield context
    context.database.dispose()


def import_shapes(context, folder, per_class: int, kinds=("disc", "bar")) -> None:
    """per_class labeled images of each kind given (class folders disc/ and bar/)."""
    shapes = write_shapes(folder, per_class=per_class)
    for kind in {"disc", "bar"} - set(kinds):
        shutil.rmtree(shapes / kind)
    import_paths(context, [shapes])


def runs(context) -> list[run_db.RunRow]:
    return run_db.list_runs(context.database)


def test_first_model_starts_when_due_and_only_once(queued_only, tmp_path):
    context = queued_only
    assert run_first_model_check(context, POLICY) is None  # an empty instance: nothing to train on
    assert first_model_note(context)["reason"] == "there are no labeled images yet"
    assert "No model has been trained yet: there are no labeled images yet" in no_model_sentence(context)

    import_shapes(context, tmp_path / "shapes", per_class=12)
    run_id = run_first_model_check(context, POLICY)
    assert run_id is not None
    run = run_db.get_run(context.database, run_id)
    assert run.trigger == FIRST_MODEL_TRIGGER == "first model"
    assert run.params["size"] == 64 and run.params["epochs"] == 1 and run.params["freeze_epochs"] == 1
    assert first_model_note(context)["state"] == "started"
    assert first_model_status(context).state == "queued"
    assert no_model_sentence(context).startswith("The first model is queued for training")

    assert run_first_model_check(context, POLICY) is None  # it is queued: not a second one
    run_db.finish_run(context.database, run_id, "succeeded")  # as if trained (no version promoted yet)
    assert first_model_status(context).state == "loading"
    assert [r.id for r in runs(context)] == [run_id]


def test_no_first_model_once_a_version_is_promoted(queued_only, tmp_path):
    context = queued_only
    import_shapes(context, tmp_path / "shapes", per_class=12)
    version_db.add_version(context.database, "v1", None, "models/v1", {})
    version_db.promote(context.database, "v1")
    assert run_first_model_check(context, POLICY) is None
    assert runs(context) == []
    assert first_model_note(context) | {"at": None} == {
        "state": "done",
        "reason": "version v1 is promoted",
        "version": "v1",
        "at": None,
    }


def test_too_few_images_per_class_or_one_class_start_nothing(queued_only, tmp_path):
    context = queued_only
    import_shapes(context, tmp_path / "few", per_class=FIRST_MODEL_PER_CLASS - 1)
    assert run_first_model_check(context, POLICY) is None
    reason = first_model_note(context)["reason"]
    assert reason.startswith(f"the first model needs {FIRST_MODEL_PER_CLASS} labeled images in each of 2 classes")
    assert f"bar {FIRST_MODEL_PER_CLASS - 1}" in reason and f"disc {FIRST_MODEL_PER_CLASS - 1}" in reason
    assert runs(context) == []

    # many more discs, still too few bars: one class is not a classifier
    import_shapes(context, tmp_path / "more", per_class=30, kinds=("disc",))
    assert run_first_model_check(context, POLICY) is None
    assert "disc 30" in first_model_note(context)["reason"]
    assert runs(context) == []
    assert no_model_sentence(context).startswith("No model has been trained yet: the first model needs 5 labeled")
    assert no_model_sentence(context).endswith("(now: disc 30, bar 4); it trains by itself as soon as it has them.")


def test_both_splits_are_needed():
    one_split = DatasetStats(by_label={"a": {"train": 9, "valid": 0}, "b": {"train": 9, "valid": 0}})
    assert "both splits" in first_model_data_problem(one_split)
    enough = DatasetStats(by_label={"a": {"train": 4, "valid": 1}, "b": {"train": 5, "valid": 0}, "c": {"train": 1}})
    assert first_model_data_problem(enough) is None


def test_a_failed_first_run_is_not_retried_until_the_data_changed(queued_only, tmp_path):
    context = queued_only
    import_shapes(context, tmp_path / "shapes", per_class=12)
    expert = user_db.add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    first = run_first_model_check(context, POLICY)
    run_db.finish_run(context.database, first, "failed", "RuntimeError: out of memory\n\nTraceback (most recent…")
    status = first_model_status(context)  # before the next check: read from the run itself
    assert status.state == "failed" and status.reason == "the last attempt failed: RuntimeError: out of memory"
    for _ in range(3):  # every later check: held, not a retry storm
        assert run_first_model_check(context, POLICY) is None
    assert first_model_note(context)["state"] == "held"
    assert "failed: RuntimeError: out of memory" in no_model_sentence(context)
    assert [r.id for r in runs(context)] == [first]

    image = next(image_db.iter_active_labeled(context.database))
    review.decide(context, expert, image.id, "keep", expected_last_id=None)  # the data changed
    second = run_first_model_check(context, POLICY)
    assert second is not None and second != first
    run_db.finish_run(context.database, second, "cancelled")
    assert run_first_model_check(context, POLICY) is None  # a cancel holds it too
    assert "was cancelled" in first_model_note(context)["reason"]
    import_shapes(context, tmp_path / "new", per_class=14)  # new images change the data too
    assert run_first_model_check(context, POLICY) is not None


def test_policy_off_never_starts_one(queued_only, tmp_path):
    context = queued_only
    import_shapes(context, tmp_path / "shapes", per_class=12)
    assert LoopPolicy().first_model is True  # on unless turned off
    off = save_policy(context, LoopPolicy(first_model=False))
    for _ in range(2):
        assert run_first_model_check(context, off) is None
    assert runs(context) == []
    assert first_model_note(context)["state"] == "off"
    assert no_model_sentence(context).startswith("No model has been trained yet. Once an admin trains")


def test_training_progress_is_told_with_the_epoch_and_the_time_left(queued_only, tmp_path):
    context = queued_only
    import_shapes(context, tmp_path / "shapes", per_class=12)
    run_id = run_first_model_check(context, LoopPolicy(size=64, freeze_epochs=1, epochs=2, head_models=False))
    run_db.claim_run(context.database, run_id)
    run_db.start_run(context.database, run_id, "cpu", 24)
    assert no_model_sentence(context).startswith("The first model is training: loading the images, estimating")

    def progress(phase, epoch, n_epochs, batch, history=()):
        run_db.update_progress(
            context.database,
            run_id,
            {"phase": phase, "epoch": epoch, "n_epochs": n_epochs, "batch": batch, "n_batches": 4,
             "history": [{"phase": p} for p in history]},
        )  # fmt: skip
        return first_model_status(context)

    clock = EtaClock()
    first = progress("frozen", 1, 1, 1)
    assert first.state == "training" and first.fraction == pytest.approx(1 / 12)  # 1 batch of 4, epoch 1 of 3
    assert clock.eta_s(run_id, first.fraction, now=100.0) is None  # one step seen: no pace yet
    sentence = status_sentence(first, clock)
    assert sentence.startswith("The first model is training: training the head, epoch 1 of 3, estimating")
    later = progress("unfrozen", 1, 2, 2, history=["frozen"])  # the head's epoch done, half of the next
    assert later.fraction == pytest.approx(1.5 / 3)
    # from 1/12 to 1/2 took 50 s, so the other half takes 60 s
    assert clock.eta_s(run_id, later.fraction, now=150.0) == pytest.approx(60.0)
    assert clock.eta_s(run_id, later.fraction, now=160.0) == pytest.approx(50.0)  # no new step: counts down
    last = progress("unfrozen", 2, 2, 2, history=["frozen", "unfrozen"])
    assert last.fraction == pytest.approx(2.5 / 3)
    assert "epoch 3 of 3, about" in status_sentence(last, clock)
    done = progress("unfrozen", 2, 2, 0, history=["frozen", "unfrozen", "unfrozen"])  # validating the last epoch
    assert done.fraction == 1.0
    assert status_sentence(done, clock).startswith("The first model is trained; it is being checked and saved")
    run_db.record_metrics(context.database, run_id, {"error_rate": 0.1})  # exporting and the gate remain
    assert training_fraction(run_db.get_run(context.database, run_id)) == 1.0
    assert "trained; it is being checked and saved" in no_model_sentence(context)


def test_predict_says_the_same_sentence_as_the_page(queued_only, tmp_path):
    context = queued_only
    import_shapes(context, tmp_path / "shapes", per_class=12)
    run_first_model_check(context, POLICY)
    png = (tmp_path / "shapes" / "disc" / "disc0.png").read_bytes()
    with LiveServer(context) as server:
        before = no_model_sentence(context)
        answer = httpx.post(f"{server.url}/api/predict", files={"file": ("disc.png", png)}, timeout=30)
        after = no_model_sentence(context)  # "queued just now" may have become "queued 10 s ago" meanwhile
    assert answer.status_code == 409
    assert answer.json()["detail"] in {before, after}
    assert answer.json()["detail"].startswith("The first model is queued for training")


def test_admin_sees_and_switches_the_first_model_policy(queued_only, tmp_path):
    import gradio as gr

    from db.users import add_user
    from ui import admin_models

    context = queued_only
    add_user(context.database, "alice", "admin", "alice-password")
    admin = gr.Request(username="alice")
    refresh, _promote, _rollback, save = admin_models.make_handlers(context, None)
    shown = refresh(admin)
    assert shown["first_model"] is True and "First model: not checked yet" in shown["status"]

    import_shapes(context, tmp_path / "few", per_class=2)
    run_first_model_check(context, POLICY)
    shown = refresh(admin)
    assert "First model: **waiting** — the first model needs 5 labeled images in each of 2 classes" in shown["status"]
    assert "just now</time>" in shown["status"]  # ui/readable.py's when(), with the full time on hover

    shown = save(admin, True, 20, 200, "", 0.02, 1, 2, 128, False)  # the checkbox off
    assert shown["first_model"] is False and "First model: **off**" in shown["status"]
    import_shapes(context, tmp_path / "enough", per_class=12)
    assert run_first_model_check(context, admin_models.load_policy(context)) is None
    assert runs(context) == []
