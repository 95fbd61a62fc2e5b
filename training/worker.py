"""One training run, in its own process: `python -m training.worker RUN_ID`.

It claims the run, beats a heartbeat into its row, and runs it by kind: a fine-tune of the network
(training/finetune.py, torch and fastai) or a head on the ranking's cached embeddings (training/head.py,
ONNX Runtime and scikit-learn: a head run never loads torch). Any failure marks the run failed with its error.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback

import numpy as np

from context import Context
from db import runs as run_db
from settings import Settings
from training.launcher import fail_run

HEARTBEAT_S = 10
NICENESS = 10  # added to the worker's CPU niceness (0 is normal, 19 the lowest priority)


def train_run(context: Context, run_id: int) -> str | None:
    """Run run_id to the end by its kind; returns the new version name, or None when cancelled."""
    if run_db.get_run(context.database, run_id).kind == run_db.HEAD:
        from training.head import train_head

        return train_head(context, run_id)
    from training.finetune import finetune

    return finetune(context, run_id)


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
