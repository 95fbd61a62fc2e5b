"""What happens to every finished candidate, head or fine-tune: named, judged at the gate, recorded, promoted
if it passes, old versions pruned, its run closed."""

from __future__ import annotations

from pathlib import Path

from context import Context
from db import model_versions as version_db
from db import runs as run_db
from models.registry import prune_versions
from training import promotion
from training.gate import DEFAULT_TOLERANCE, judge
from training.hooks import GATE


def free_version_name(context: Context, wanted: str) -> str:
    """wanted, or wanted.2, wanted.3 … when a version of that name exists (a restored or hand-made one)."""
    name, n = wanted, 1
    while version_db.get_version(context.database, name) or (context.settings.data_dir / "models" / name).exists():
        n += 1
        name = f"{wanted}.{n}"
    return name


def register_candidate(
    context: Context, run_id: int, version: str, path: Path, metrics: dict, params: dict, kind: str
) -> None:
    """Judge the version written at path (unless the run said --no-promote), record it, promote it if it passed."""
    database = context.database
    summary = {"error_rate": metrics["error_rate"], "valid_count": metrics["valid_count"], "kind": kind}
    promote = params.get("promote", True)
    if promote:
        verdict = judge(context, version, path, float(params.get("tolerance", DEFAULT_TOLERANCE)), kind)
        summary["gate"] = metrics["gate"] = verdict.as_dict()
        run_db.record_metrics(database, run_id, metrics)
    version_db.add_version(database, version, run_id, str(path.relative_to(context.settings.data_dir)), summary)
    if promote and summary["gate"]["promote"]:
        promotion.promote(context, version, GATE)
    prune_versions(context)
    run_db.finish_run(database, run_id, "succeeded")
