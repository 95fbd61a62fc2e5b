"""One training run, in its own process: `python -m training.worker RUN_ID`.

It reads the run's parameters from the database, trains, writes a model version and reports
progress and the outcome back to the database. Any failure marks the run failed with its error.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

import numpy as np
import torch
from fastai.callback.progress import ProgressCallback

from context import Context
from db import model_versions as version_db
from db import runs as run_db
from models.backbones import spec_for
from models.onnx_export import export_onnx
from models.registry import CLASSES_FILE, FASTAI_FILE, ONNX_FILE, prune_versions, write_version
from settings import Settings
from training import promotion
from training.data import build_dataloaders, class_counts, snapshot, snapshot_digest
from training.diagnosis import diagnose
from training.evaluate import summarize
from training.gate import DEFAULT_TOLERANCE, judge
from training.hooks import GATE
from training.launcher import fail_run
from training.learner import ReportProgress, build_learner
from training.params import DEFAULTS

HEARTBEAT_S = 10
NICENESS = 10  # added to the worker's CPU niceness (0 is normal, 19 the lowest priority)
LR_MULT = 100  # the body learns this many times slower than the head after unfreezing


def pick_device() -> str:
    """'cuda' when a GPU is visible, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def free_version_name(context: Context, wanted: str) -> str:
    """wanted, or wanted.2, wanted.3 … when a version of that name exists (a restored or hand-made one)."""
    name, n = wanted, 1
    while version_db.get_version(context.database, name) or (context.settings.data_dir / "models" / name).exists():
        n += 1
        name = f"{wanted}.{n}"
    return name


def train_run(context: Context, run_id: int) -> str | None:
    """Train run_id to the end; returns the new version name, or None when cancelled."""
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
    metrics: dict = {"classes": list(dls.vocab)}

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
    summary = {"error_rate": metrics["error_rate"], "valid_count": metrics["valid_count"]}
    if params.get("promote", True):
        verdict = judge(context, version, path, float(params.get("tolerance", DEFAULT_TOLERANCE)))
        summary["gate"] = metrics["gate"] = verdict.as_dict()
        run_db.record_metrics(database, run_id, metrics)
    version_db.add_version(database, version, run_id, str(path.relative_to(context.settings.data_dir)), summary)
    if params.get("promote", True) and summary["gate"]["promote"]:
        promotion.promote(context, version, GATE)
    prune_versions(context)
    run_db.finish_run(database, run_id, "succeeded")
    return version


def main(argv: list[str]) -> int:
    """Entry point of the training process."""
    run_id = int(argv[0])
    # Training is background work: on a CPU it yields to the web processes beside it (predictions, and
    # the quick loop that re-ranks the queue after an expert's decisions), which otherwise wait on it.
    os.nice(NICENESS)
    context = Context.open(Settings.from_env())
    if not run_db.claim_run(context.database, run_id):
        print(f"training run {run_id} is not waiting for a worker", file=sys.stderr)
        context.database.dispose()
        return 2
    stop_heartbeat = threading.Event()
    threading.Thread(target=_beat, args=(context, run_id, stop_heartbeat), daemon=True).start()
    try:
        train_run(context, run_id)
        return 0
    except BaseException as error:
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        fail_run(context, run_id, f"{detail}\n\n{traceback.format_exc()}")
        return 1
    finally:
        stop_heartbeat.set()
        context.database.dispose()


def _beat(context: Context, run_id: int, stop: threading.Event) -> None:
    # Silence longer than STALE_HEARTBEAT_S lets any server mark the run failed, so keep talking
    # through the long stretches without batches (loading data, exporting, the gate).
    while not stop.wait(HEARTBEAT_S):
        try:
            run_db.heartbeat(context.database, run_id)
        except Exception:  # a busy database must not kill the training; the next beat tries again
            pass


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main(sys.argv[1:]))
