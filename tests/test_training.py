"""Real training on tiny generated images: the run, its records, the registry and the predictor."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image
from training_fixtures import TRAIN_ARGS, copy_data_dir, open_data_dir, run_cli, shape_image

from db import model_versions as version_db
from db import runs as run_db
from models.predictor import LoadedModel
from models.registry import read_meta, write_version
from training.finetune import pick_device
from training.launcher import queue_run, spawn_worker, wait_for_worker

DEVICE = pick_device()  # "cuda" where the suite runs on a GPU machine


def test_cli_train_writes_and_promotes_a_version(trained_dir):
    output = (trained_dir.parent / "train-output.txt").read_text()
    assert f"training run 1 succeeded on {DEVICE}" in output and "model version v1 written and promoted" in output
    assert "diagnosis:" in output
    folder = trained_dir / "models" / "v1"
    assert sorted(p.name for p in folder.iterdir()) == ["classes.json", "export.pkl", "meta.json", "model.onnx"]
    meta = read_meta(folder)
    assert meta["classes"] == ["bar", "disc"] and meta["size"] == 64 and meta["onnx"] is True
    assert meta["mean"] == [0.5, 0.5, 0.5] and meta["data"]["images"] == 40 and meta["device"] == DEVICE
    context = open_data_dir(trained_dir)
    assert version_db.promoted_version(context.database).version == "v1"
    context.database.dispose()


def test_run_records_curves_confusion_matrix_and_diagnosis(trained_dir):
    context = open_data_dir(trained_dir)
    run = run_db.get_run(context.database, 1)
    context.database.dispose()
    assert run.status == "succeeded" and run.device == DEVICE and run.image_count == 40
    history = run.metrics["history"]
    assert [h["phase"] for h in history] == ["frozen", "unfrozen"]
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["valid_loss"]) for h in history)
    matrix = np.array(run.metrics["confusion_matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == run.metrics["valid_count"] > 0
    assert set(run.metrics["per_class_accuracy"]) == {"bar", "disc"}
    assert run.metrics["diagnosis"] and all(isinstance(s, str) for s in run.metrics["diagnosis"])
    assert run.progress["phase"] == "unfrozen" and run.progress["epoch"] == 1


def test_model_learned_the_shapes(trained_dir):
    model = LoadedModel(trained_dir / "models" / "v1")
    images = [
        Image.open(__import__("io").BytesIO(shape_image(k, seed=5000 + i))) for k in ("disc", "bar") for i in range(5)
    ]
    predicted = [model.predict(image).predictions[0][0] for image in images]
    assert sum(p == "disc" for p in predicted[:5]) + sum(p == "bar" for p in predicted[5:]) >= 8


def test_onnx_predictor_matches_the_fastai_export(trained_dir):
    from fastai.learner import load_learner

    folder = trained_dir / "models" / "v1"
    learn = load_learner(folder / "export.pkl", cpu=True)
    model = LoadedModel(folder)
    assert model.backend == "onnx"
    for seed in range(3):
        image = Image.open(__import__("io").BytesIO(shape_image("disc", seed=9000 + seed))).convert("RGB")
        image = image.resize((80, 64))  # not square: the centre crop must match fastai's
        from fastai.vision.core import PILImage

        _, _, fastai_probs = learn.predict(PILImage.create(np.asarray(image)))
        ours = model.probabilities([image])[0]
        by_class = dict(zip(model.classes, ours, strict=True))
        theirs = dict(zip(learn.dls.vocab, fastai_probs.numpy(), strict=True))
        assert max(abs(by_class[c] - theirs[c]) for c in by_class) < 2e-3


def test_asking_for_a_backbone_without_weights_is_a_clear_error(trained_dir, tmp_path):
    data_dir = copy_data_dir(trained_dir, tmp_path / "data")
    result = run_cli(data_dir, "train", "--arch", "resnet34")
    assert result.returncode == 2
    assert "resnet34 has no weights" in result.stderr and "--weights" in result.stderr
    context = open_data_dir(data_dir)
    assert [r.id for r in run_db.list_runs(context.database)] == [1]  # nothing queued
    context.database.dispose()


def test_crashed_run_is_marked_failed_and_the_promoted_model_stays(trained_dir, tmp_path):
    data_dir = copy_data_dir(trained_dir, tmp_path / "data")
    (tmp_path / "broken.pth").write_bytes(b"not a weights file")
    result = run_cli(data_dir, "train", "--arch", "resnet34", "--weights", str(tmp_path / "broken.pth"), *TRAIN_ARGS)
    assert result.returncode == 1 and "failed" in result.stdout
    context = open_data_dir(data_dir)
    run = run_db.list_runs(context.database)[0]
    assert run.status == "failed" and "cannot be read" in run.error
    assert version_db.promoted_version(context.database).version == "v1"
    assert sorted(p.name for p in (data_dir / "models").iterdir()) == ["v1"]
    context.database.dispose()


def test_killed_worker_marks_the_run_failed(trained_dir, tmp_path):
    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))
    run_id = queue_run(context, size=64, epochs=3, freeze_epochs=1, batch_size=8)
    process = spawn_worker(context, run_id)

    def kill_when_training(run):
        if run and run.status == "running":
            os.kill(process.pid, signal.SIGKILL)

    run = wait_for_worker(context, run_id, process, on_progress=kill_when_training, poll_s=0.2)
    assert run.status == "failed" and "exit code -9" in run.error
    assert version_db.promoted_version(context.database).version == "v1"
    assert queue_run(context, size=64) == run_id + 1  # the lock is free again
    context.database.dispose()


def test_cancel_stops_a_run_without_a_new_version(trained_dir, tmp_path):
    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))
    run_id = queue_run(context, size=64, epochs=20, freeze_epochs=1, batch_size=8)
    process = spawn_worker(context, run_id)

    def cancel_after_first_batch(run):
        # Any report from the training phases: an epoch's closing report says batch 0, and on an idle machine
        # a tiny epoch can end between two polls, so waiting for a report with batch > 0 could miss them all.
        if run and run.progress.get("phase") in ("frozen", "unfrozen"):
            run_db.request_cancel(context.database, run_id)

    run = wait_for_worker(context, run_id, process, on_progress=cancel_after_first_batch, poll_s=0.2)
    assert run.status == "cancelled"
    assert len(run.progress["history"]) < 21
    assert [v.version for v in version_db.list_versions(context.database)] == ["v1"]
    context.database.dispose()


def test_second_run_is_refused_while_one_is_active(trained_dir, tmp_path):
    from db.runs import TrainingBusy

    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))
    first = queue_run(context, size=64)
    with pytest.raises(TrainingBusy, match=f"run {first} is queued"):
        queue_run(context, size=64)
    context.database.dispose()


def test_half_written_version_is_never_visible(trained_dir, tmp_path):
    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))

    def fill_then_crash(folder):
        (folder / "model.onnx").write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_version(context, "v99", fill_then_crash)
    assert sorted(p.name for p in (context.settings.data_dir / "models").iterdir()) == ["v1"]
    context.database.dispose()


def test_worker_progress_is_json_in_the_database(trained_dir):
    context = open_data_dir(trained_dir)
    run = run_db.get_run(context.database, 1)
    context.database.dispose()
    assert json.loads(json.dumps(run.progress))["n_batches"] >= 1
    started = run.started_at.timestamp()
    assert run.finished_at.timestamp() >= started > time.time() - 3600


def test_torch_fallback_predicts_like_onnx(trained_dir, tmp_path):
    import io
    import shutil

    folder = tmp_path / "v1-torch"
    shutil.copytree(trained_dir / "models" / "v1", folder)
    (folder / "model.onnx").unlink()
    meta = read_meta(folder)
    meta["onnx"] = False
    (folder / "meta.json").write_text(json.dumps(meta))
    by_torch, by_onnx = LoadedModel(folder), LoadedModel(trained_dir / "models" / "v1")
    assert (by_torch.backend, by_onnx.backend) == ("torch", "onnx")
    images = [Image.open(io.BytesIO(shape_image(kind, seed=321))) for kind in ("disc", "bar")]
    assert np.abs(by_torch.probabilities(images) - by_onnx.probabilities(images)).max() < 1e-3


def test_lr_find_runs_and_its_suggestion_is_used(trained_dir, tmp_path):
    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))
    run_id = queue_run(
        context, size=64, epochs=0, freeze_epochs=1, batch_size=8, find_lr=True, lr_find_iterations=8, promote=False
    )
    run = wait_for_worker(context, run_id, spawn_worker(context, run_id))
    assert run.status == "succeeded", run.error
    finder = run.metrics["lr_find"]
    assert len(finder["lrs"]) == len(finder["losses"]) > 0
    assert run.metrics["lr"] == pytest.approx(finder["suggested_lr"])
    assert [h["phase"] for h in run.metrics["history"]] == ["frozen"]
    assert version_db.promoted_version(context.database).version == "v1"  # --no-promote kept it a candidate
    assert version_db.get_version(context.database, f"v{run_id}").status == "candidate"
    context.database.dispose()


def test_only_the_newest_versions_are_kept(trained_dir, tmp_path):
    from training_fixtures import clone_version

    from models.registry import prune_versions

    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))
    for number in range(2, 9):
        clone_version(context, "v1", f"v{number}")
    removed = prune_versions(context, keep=5)
    assert sorted(removed) == ["v2", "v3"]  # v1 is promoted, so it stays
    assert sorted(p.name for p in (context.settings.data_dir / "models").iterdir()) == [
        "v1",
        "v4",
        "v5",
        "v6",
        "v7",
        "v8",
    ]
    context.database.dispose()
