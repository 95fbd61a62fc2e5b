"""The fine-tune run: fastai's fine_tune of a pretrained body with a new head, on the database's labeled images.

Runs in the training process (training/worker.py); writes a model version with the fastai export and the
ONNX graph, then hands it to the gate like every candidate (training/candidates.py).
"""

from __future__ import annotations

import json
import os
import time

import torch
from fastai.callback.progress import ProgressCallback

from context import Context
from db import runs as run_db
from models.backbones import spec_for
from models.onnx_export import export_onnx
from models.registry import CLASSES_FILE, FASTAI_FILE, ONNX_FILE, write_version
from training.candidates import free_version_name, register_candidate
from training.data import build_dataloaders, class_counts, snapshot, snapshot_digest
from training.diagnosis import diagnose
from training.evaluate import summarize
from training.learner import ReportProgress, build_learner
from training.params import DEFAULTS

LR_MULT = 100  # the body learns this many times slower than the head after unfreezing


def pick_device() -> str:
    """'cuda' when a GPU is visible, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def finetune(context: Context, run_id: int) -> str | None:
    """Fine-tune run_id to the end; returns the new version name, or None when cancelled."""
    database = context.database
    run = run_db.get_run(database, run_id)
    params = run.params
    device = pick_device()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    frame = snapshot(context)
    run_db.start_run(database, run_id, device, len(frame))
    spec = spec_for(run.arch)
    size = int(params["size"])
    dls = build_dataloaders(frame, size, int(params["batch_size"]), spec.mean, spec.std, device=torch.device(device))
    learn = build_learner(dls, run.arch, params.get("weights"))
    learn.remove_cb(ProgressCallback)  # progress goes to the database, not to a console bar
    learn.logger = lambda *_: None
    if device == "cuda":
        learn.to_fp16()
    progress = ReportProgress(lambda p: run_db.update_progress(database, run_id, p))
    learn.add_cb(progress)
    started = time.monotonic()
    metrics: dict = {"classes": list(dls.vocab), "kind": run_db.FINETUNE}

    lr = params.get("lr")
    if params.get("find_lr"):
        progress.phase = "lr_find"
        suggestion = learn.lr_find(num_it=int(params.get("lr_find_iterations", 30)), show_plot=False)
        metrics["lr_find"] = {
            "suggested_lr": float(suggestion.valley),
            "lrs": [float(x) for x in learn.recorder.lrs],
            "losses": [float(x) for x in learn.recorder.losses],
        }
        lr = lr or float(suggestion.valley)
    lr = lr or DEFAULTS.lr

    # fastai's fine_tune, spelled out so a cancel between the two phases is honoured.
    progress.phase = "frozen"
    learn.freeze()
    learn.fit_one_cycle(int(params["freeze_epochs"]), slice(lr), pct_start=0.99)
    if not progress.cancelled and int(params["epochs"]) > 0:
        progress.phase = "unfrozen"
        learn.unfreeze()
        learn.fit_one_cycle(int(params["epochs"]), slice(lr / 2 / LR_MULT, lr / 2), pct_start=0.3, div=5.0)
    if progress.cancelled:
        run_db.finish_run(database, run_id, "cancelled")
        return None

    learn.remove_cb(progress)  # validation passes are not epochs; and an export must not hold the database
    probabilities, targets = learn.get_preds(dl=dls.valid)
    metrics.update(summarize(probabilities.float().numpy(), targets.numpy(), list(dls.vocab)))
    metrics.update(
        history=progress.history,
        diagnosis=diagnose(progress.history),
        lr=lr,
        seconds=round(time.monotonic() - started, 1),
        snapshot=snapshot_digest(frame),
        train_count=int((~frame["is_valid"]).sum()),
        class_counts=class_counts(frame),  # what the model card says it was trained on
    )
    run_db.record_metrics(database, run_id, metrics)

    version = free_version_name(context, f"v{run_id}")

    if device == "cuda":
        learn.to_fp32()

    def fill(folder) -> dict:
        learn.export(folder / FASTAI_FILE)
        (folder / CLASSES_FILE).write_text(json.dumps(list(dls.vocab)))
        has_onnx = export_onnx(learn.model, size, folder / ONNX_FILE)
        return {
            "run_id": run_id,
            "arch": run.arch,
            "size": size,
            "mean": spec.mean,
            "std": spec.std,
            "kind": run_db.FINETUNE,
            "classes": list(dls.vocab),
            "onnx": has_onnx,
            "device": device,
            "metrics": {k: metrics[k] for k in ("error_rate", "valid_count", "per_class_accuracy", "confusion_matrix")},
            "data": {
                "images": len(frame),
                "snapshot": metrics["snapshot"],
                "class_counts": metrics["class_counts"],
                "last_decision_id": run_db.get_run(database, run_id).last_decision_id,  # set by start_run
            },
        }

    path = write_version(context, version, fill)
    register_candidate(context, run_id, version, path, metrics, params, run_db.FINETUNE)
    return version
