"""Writing the decision log as CSV, beside the cleaned dataset."""

from __future__ import annotations

import csv
from pathlib import Path

from context import Context
from db.decisions import list_decisions

COLUMNS = [
    "id", "time", "user", "image_id", "action", "old_label", "new_label", "model_version", "scoring", "score", "undoes",
    "purpose",
]  # fmt: skip


def write_decision_log(context: Context, path: Path) -> int:
    """Every decision in the order it was made; returns how many."""
    rows = list_decisions(context.database)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for d in rows:
            writer.writerow(
                [
                    d.id,
                    d.created_at.isoformat(),
                    d.user_name or "",
                    d.image_id,
                    d.action,
                    d.old_label or "",
                    d.new_label or "",
                    d.model_version or "",
                    d.scorer or "",
                    "" if d.score is None else f"{d.score:.6f}",
                    d.undoes_id or "",
                    d.purpose or "",
                ]
            )
    return len(rows)
