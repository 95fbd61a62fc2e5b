"""Named commands and queries on training runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from db.engine import Database
from db.schema import Decision, TrainingRun, utcnow

ACTIVE_STATUSES = ("queued", "running", "cancelling")


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
    )


def create_run(database: Database, arch: str, params: dict, trigger: str = "manual") -> int:
    """Queue a run and return its id."""
    with database.write() as session:
        run = TrainingRun(arch=arch, params=params, trigger=trigger, status="queued")
        session.add(run)
        session.flush()
        return run.id


def get_run(database: Database, run_id: int) -> RunRow | None:
    """The run with this id, or None."""
    with database.read() as session:
        run = session.get(TrainingRun, run_id)
        return _row(run) if run else None


def list_runs(database: Database, limit: int = 50) -> list[RunRow]:
    """The newest runs first."""
    with database.read() as session:
        return [_row(r) for r in session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit))]


def start_run(database: Database, run_id: int, device: str, image_count: int) -> None:
    """Mark a run running on device with image_count images and the decisions made so far."""
    with database.write() as session:
        run = session.get(TrainingRun, run_id)
        run.status = "running" if run.status == "queued" else run.status
        run.device = device
        run.image_count = image_count
        run.started_at = utcnow()
        run.last_decision_id = session.scalar(select(func.max(Decision.id)))


def update_progress(database: Database, run_id: int, progress: dict) -> str:
    """Store the run's progress and return its status (so the trainer sees a cancel request)."""
    with database.write() as session:
        run = session.get(TrainingRun, run_id)
        run.progress = progress
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


def request_cancel(database: Database, run_id: int) -> bool:
    """Ask a queued or running run to stop; False when it has already ended."""
    with database.write() as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status not in ACTIVE_STATUSES:
            return False
        run.status = "cancelling"
        return True
