"""Exporting the cleaned dataset: active, labeled images with their current labels."""

from __future__ import annotations

import csv
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from context import Context
from db import images as image_db
from db.schema import utcnow
from db.store import EXPORTS_FOLDER
from errors import LoupeError
from labeling.imports.ingest import ProgressFn
from labeling.imports.labels import label_problem
from labeling.instance.decision_log import write_decision_log

FORMATS = ("folders", "csv")


class ExportError(LoupeError, ValueError):
    """An export that cannot start, with a sentence saying why."""


@dataclass(frozen=True)
class ExportSummary:
    """Where the export went and how many images it holds."""

    destination: Path
    images: int
    decisions: int


def export_dataset(context: Context, destination: Path, fmt: str, progress: ProgressFn | None = None) -> ExportSummary:
    """Write DEST/{train,valid}/<label>/ files, or DEST/cleaned.csv with DEST/images/; and DEST/decisions.csv."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    destination = Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ExportError(f"{destination} exists and is not an empty folder; choose a new one")
    rows = list(image_db.iter_active_labeled(context.database))
    if fmt == "folders":
        refuse_unsafe_folder_names(rows)
    destination.mkdir(parents=True, exist_ok=True)
    csv_rows = []
    for done, row in enumerate(rows, start=1):
        source = context.store.absolute(row.stored_path)
        filename = Path(row.stored_path).name
        if fmt == "folders":
            relative = Path(row.split) / row.label / filename
        else:
            relative = Path("images") / filename
            csv_rows.append([relative.as_posix(), row.label, row.split == "valid", row.original_name, row.source])
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination / relative)
        if progress:
            progress(done, len(rows))
    if fmt == "csv":
        with open(destination / "cleaned.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["name", "label", "is_valid", "original_name", "source"])
            writer.writerows(csv_rows)
    decisions = write_decision_log(context, destination / "decisions.csv")
    return ExportSummary(destination, len(rows), decisions)


def refuse_unsafe_folder_names(rows: list[image_db.ImageRow]) -> None:
    """ExportError naming every label that cannot be a folder name, before anything is written."""
    # Labels stored before the label rule (old databases, direct db/ callers) may be '..', too long for
    # the file system, or hold a separator: found half-way they would escape DEST or crash the copy.
    images_per_label: dict[str, int] = {}
    for row in rows:
        images_per_label[row.label] = images_per_label.get(row.label, 0) + 1
    problems = [(label, label_problem(label)) for label in sorted(images_per_label)]
    bad = [(label, problem) for label, problem in problems if problem]
    if bad:
        listed = "; ".join(f"{problem} ({images_per_label[label]} images)" for label, problem in bad)
        raise ExportError(
            f"{len(bad)} label(s) cannot be folder names, so nothing was exported: {listed}. "
            "Relabel those images to a valid class (Review tab or the review API) and export again, "
            "or export the csv layout, which does not make folders from labels."
        )


def export_archive(context: Context, fmt: str, progress: ProgressFn | None = None) -> tuple[Path, ExportSummary]:
    """Export into a new zip under DATA/exports/ (the Admin tab's download); returns its path and the summary."""
    exports = context.store.data_dir / EXPORTS_FOLDER
    exports.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=exports, prefix=f"loupe-{fmt}-{utcnow():%Y%m%d-%H%M%S}-"))
    try:
        summary = export_dataset(context, folder, fmt, progress)
        archive = Path(shutil.make_archive(str(folder), "zip", root_dir=folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return archive, summary
