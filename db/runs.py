"""Named commands and queries on training runs."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from db.engine import Database
from db.schema import Decision, TrainingRun, as_utc, utcnow
from errors import LoupeError

ACTIVE_STATUSES = ("queued", "running", "cancelling")
FINETUNE, HEAD = "finetune", "head"  # the kinds of run: the network fine-tuned, or a head on cached embeddings
RUN_KINDS = (FINETUNE, HEAD)
TRAINING_SLOT = 1
STALE_HEARTBEAT_S = 90  # a worker touches its run every few seconds; this much silence means it died


class TrainingBusy(LoupeError, RuntimeError):
    """Another run is queued or running; the message names it."""


@dataclass(frozen=True)
class RunRow:
    """A training run as the UI and the CLI see it."""

    id: int
    status: str
    trigger: str
    arch: str
    params: dict
    device: str | None
    progress: dict
    metrics: dict
    image_count: int | None
    last_decision_id: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_host: str | None = None
    worker_pid: int | None = None
    heartbeat_at: datetime | None = None
    kind: str = FINETUNE

    @property
    def seconds(self) -> float | None:
        """How long it ran (so far, while it runs)."""
        if self.started_at is None:
            return None
        end = self.finished_at or utcnow()
        return (as_utc(end) - as_utc(self.started_at)).total_seconds()


def _row(run: TrainingRun) -> RunRow:
    return RunRow(
        run.id,
        run.status,
        run.trigger,
        run.arch,
        dict(run.params or {}),
        run.device,
        dict(run.progress or {}),
        dict(run.metrics or {}),
        run.image_count,
        run.last_decision_id,
        run.error,
        run.created_at,
        run.started_at,
        run.finished_at,
        run.worker_host,
        run.worker_pid,
        run.heartbeat_at,
        run.kind or FINETUNE,
    )


def active_run(database: Database) -> RunRow | None:
    """The run holding the training slot, if any."""
    with database.read() as session:
        run = session.scalar(select(TrainingRun).where(TrainingRun.active_slot == TRAINING_SLOT))
        return _row(run) if run else None


def create_run(database: Database, arch: str, params: dict, trigger: str = "manual", kind: str = FINETUNE) -> int:
    """Queue a run holding the training slot and return its id; TrainingBusy while another holds it."""
    try:
        with database.write() as session:
            run = TrainingRun(
                arch=arch, params=params, trigger=trigger, kind=kind, status="queued", active_slot=TRAINING_SLOT
            )
            # The decisions this run answers to, from the start: a run that fails before it
            # starts must not leave "N decisions since the last run" true for ever.
            run.last_decision_id = session.scalar(select(func.max(Decision.id)))
            session.add(run)
            session.flush()
            return run.id
    except IntegrityError:
        busy = active_run(database)
        what = f"training run {busy.id} is {busy.status}" if busy else "another training run holds the slot"
        raise TrainingBusy(f"{what}; wait for it or cancel it") from None


def get_run(database: Database, run_id: int) -> RunRow | None:
    """The run with this id, or None."""
    with database.read() as session:
        run = session.get(TrainingRun, run_id)
        return _row(run) if run else None


def list_runs(database: Database, limit: int = 50) -> list[RunRow]:
    """The newest runs first."""
    with database.read() as session:
        return [_row(r) for r in session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit))]


def claim_run(database: Database, run_id: int) -> bool:
    """Record this process as the run's worker; False when the run is not waiting (or another worker won)."""
    with database.write() as session:
        claimed = session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run_id, TrainingRun.status == "queued", TrainingRun.worker_pid.is_(None))
            .values(worker_host=socket.gethostname(), worker_pid=os.getpid(), heartbeat_at=utcnow())
        )
        return claimed.rowcount == 1


def next_queued_run(database: Database) -> int | None:
    """The oldest run no worker has claimed yet (for `server.py worker`)."""
    with database.read() as session:
        return session.scalar(
            select(TrainingRun.id)
            .where(TrainingRun.status == "queued", TrainingRun.worker_pid.is_(None))
            .order_by(TrainingRun.id)
            .limit(1)
        )


def start_run(database: Database, run_id: int, device: str, image_count: int) -> None:
    """Mark a run running on device with image_count images and the decisions made so far."""
    with database.write() as session:
        run = session.get(TrainingRun, run_id)
        run.status = "running" if run.status == "queued" else run.status
        run.device = device
        run.image_count = image_count
        run.started_at = utcnow()
        run.heartbeat_at = utcnow()
        run.last_decision_id = session.scalar(select(func.max(Decision.id)))


def heartbeat(database: Database, run_id: int) -> str | None:
    """Say the run's worker is alive; returns the run's status (a cancel request shows here)."""
    with database.write() as session:
        run = session.get(TrainingRun, run_id)
        if run is None:
            return None
        run.heartbeat_at = utcnow()
        return run.status


def update_progress(database: Database, run_id: int, progress: dict) -> str:
    """Store the run's progress and return its status (so the trainer sees a cancel request)."""
    with database.write() as session:
        run = session.get(TrainingRun, run_id)
        run.progress = progress
        run.heartbeat_at = utcnow()
        return run.status


def record_metrics(database: Database, run_id: int, metrics: dict) -> None:
    """Replace the run's metrics (per-epoch history, confusion matrix, diagnosis…)."""
    with database.write() as session:
        session.get(TrainingRun, run_id).metrics = metrics


def finish_run(database: Database, run_id: int, status: str, error: str | None = None) -> None:
    """Close a run as succeeded, failed or cancelled."""
    with database.write() as session:
        run = session.get(TrainingRun, run_id)
        run.status = status
        run.error = error
        run.finished_at = utcnow()
        run.active_slot = None  # the slot frees in the same commit that ends the run


def request_cancel(database: Database, run_id: int) -> bool:
    """Ask a queued or running run to stop; False when it has already ended."""
    with database.write() as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status not in ACTIVE_STATUSES:
            return False
        run.status = "cancelling"
        return True


def _is_dead(run: TrainingRun, now: datetime, stale_after_s: float) -> str | None:
    """Why an active run's worker is gone, or None when it may be alive."""
    if run.worker_pid is not None and run.worker_host == socket.gethostname():
        try:
            os.kill(run.worker_pid, 0)
        except ProcessLookupError:
            return f"its worker process {run.worker_pid} is gone"
        except PermissionError:
            pass  # alive, owned by another user
    last_sign = run.heartbeat_at or run.created_at
    if now - as_utc(last_sign) > timedelta(seconds=stale_after_s):
        return f"no sign of life from its worker for {stale_after_s:.0f} s"
    return None


def fail_dead_runs(database: Database, stale_after_s: float = STALE_HEARTBEAT_S) -> list[int]:
    """Mark failed every active run whose worker died (a crash, a kill, a lost machine); returns their ids.

    A queued run nobody picked up within stale_after_s counts as dead too; it can be retried.
    """
    now = utcnow()
    failed = []
    with database.write() as session:
        for run in session.scalars(select(TrainingRun).where(TrainingRun.status.in_(ACTIVE_STATUSES))):
            reason = _is_dead(run, now, stale_after_s)
            if reason:
                run.error = f"marked failed: it was {run.status} but {reason}; retry it from the Admin tab"
                run.status, run.finished_at, run.active_slot = "failed", now, None
                failed.append(run.id)
    return failed


def last_trained_decision_id(database: Database, kind: str = FINETUNE) -> int | None:
    """The newest decision any run of this kind has seen (None when none started since decisions began).

    Fine-tunes by default: the loop's heads follow every settled ranking, and must not reset the count of
    decisions that calls for the next fine-tune.
    """
    with database.read() as session:
        return session.scalar(select(func.max(TrainingRun.last_decision_id)).where(TrainingRun.kind == kind))


def count_runs(database: Database, kind: str) -> int:
    """How many runs of this kind were ever queued, whatever became of them."""
    with database.read() as session:
        return session.scalar(select(func.count(TrainingRun.id)).where(TrainingRun.kind == kind)) or 0


def decisions_included(database: Database, run_ids: list[int]) -> dict[int, int]:
    """Per run, how many decisions it trained on (those up to its last decision id), in one query."""
    up_to = select(func.count(Decision.id)).where(Decision.id <= TrainingRun.last_decision_id).scalar_subquery()
    with database.read() as session:
        rows = session.execute(select(TrainingRun.id, up_to).where(TrainingRun.id.in_(run_ids))).all()
    return {run_id: count for run_id, count in rows}
