"""Exporting the cleaned dataset: active, labeled images with their current labels."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from context import Context
from db import images as image_db
from db import scores as score_db
from db.schema import utcnow
from db.store import EXPORTS_FOLDER
from errors import LoupeError
from labeling.imports.ingest import ProgressFn
from labeling.imports.labels import label_problem
from labeling.instance.decision_log import write_decision_log

FORMATS = ("folders", "csv", "imagefolder", "labelstudio")
HF_SPLITS = {"train": "train", "valid": "validation"}  # Loupe's split → Hugging Face's split folder and name
LS_CONTROL = {"from_name": "label", "to_name": "image", "type": "choices"}  # label_config.xml's Choices on Image


class ExportError(LoupeError, ValueError):
    """An export that cannot start, with a sentence saying why."""


@dataclass(frozen=True)
class ExportSummary:
    """Where the export went and how many images it holds."""

    destination: Path
    images: int
    decisions: int


def export_dataset(
    context: Context, destination: Path, fmt: str, progress: ProgressFn | None = None, ls_image_prefix: str = ""
) -> ExportSummary:
    """Write the active labeled images in format fmt, and DEST/decisions.csv:

    - folders: DEST/{train,valid}/<label>/ files (torchvision ImageFolder, fastai from_folder, FiftyOne);
    - csv: DEST/cleaned.csv (fastai's name,label,is_valid) with the files in DEST/images/;
    - imagefolder: DEST/{train,validation}/ files, each folder with metadata.jsonl (Hugging Face datasets);
    - labelstudio: DEST/tasks.json (labels as annotations, scores as predictions), DEST/label_config.xml and
      DEST/images/; each task's data.image is ls_image_prefix + "images/<file>".
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    destination = Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ExportError(f"{destination} exists and is not an empty folder; choose a new one")
    rows = list(image_db.iter_active_labeled(context.database))
    if fmt == "folders":
        refuse_unsafe_folder_names(rows)
    scorer, results = _serving_results(context) if fmt in ("imagefolder", "labelstudio") else ("", {})
    destination.mkdir(parents=True, exist_ok=True)
    csv_rows = []
    metadata: dict[str, list[dict]] = {}
    tasks = []
    for done, row in enumerate(rows, start=1):
        source = context.store.absolute(row.stored_path)
        filename = Path(row.stored_path).name
        if fmt == "folders":
            relative = Path(row.split) / row.label / filename
        elif fmt == "imagefolder":
            split = HF_SPLITS[row.split]
            relative = Path(split) / filename
            score = _label_error_score(results.get(row.id), row.label)
            line = {"file_name": filename, "label": row.label, "split": split, "loupe_id": row.id, "score": score}
            metadata.setdefault(split, []).append(line)
        else:
            relative = Path("images") / filename
            if fmt == "csv":
                csv_rows.append([relative.as_posix(), row.label, row.split == "valid", row.original_name, row.source])
            else:
                image = ls_image_prefix + relative.as_posix()
                tasks.append(labelstudio_task(row, image, scorer, results.get(row.id)))
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination / relative)
        if progress:
            progress(done, len(rows))
    if fmt == "csv":
        with open(destination / "cleaned.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["name", "label", "is_valid", "original_name", "source"])
            writer.writerows(csv_rows)
    scored = {split for split, lines in metadata.items() if any(line["score"] is not None for line in lines)}
    for split, lines in metadata.items():
        if scored and split not in scored:
            # datasets types each split's columns from its own file and refuses a split whose scores are all
            # null (type null) beside one with numbers (float64): there, "not scored" is written as NaN.
            for line in lines:
                line["score"] = float("nan")
        with open(destination / split / "metadata.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    if fmt == "labelstudio":
        (destination / "tasks.json").write_text(json.dumps(tasks, ensure_ascii=False, indent=1), encoding="utf-8")
        predicted = {results[row.id].predicted_label for row in rows if row.id in results}
        labels = sorted({row.label for row in rows} | predicted)
        (destination / "label_config.xml").write_text(labelstudio_config(labels), encoding="utf-8")
    decisions = write_decision_log(context, destination / "decisions.csv")
    return ExportSummary(destination, len(rows), decisions)


def _serving_results(context: Context) -> tuple[str, dict[int, score_db.NewScore]]:
    """The scoring pass the queue reads (its name) and its result per image."""
    from labeling.ranking.scoring import serving_scorer  # numpy and the embedder: only for these formats

    scorer = serving_scorer(context)
    return scorer, score_db.pass_results(context.database, scorer)


def _label_error_score(result: score_db.NewScore | None, label: str) -> float | None:
    """How likely label is wrong, from the pass; None when the pass scored another label (relabeled since)."""
    return result.score if result is not None and result.given_label == label else None


def _choice(label: str, result_id: str) -> dict:
    return {"id": result_id, **LS_CONTROL, "value": {"choices": [label]}}


def labelstudio_task(row: image_db.ImageRow, image: str, scorer: str, result: score_db.NewScore | None) -> dict:
    """A Label Studio task: the label as an annotation, the pass's predicted class (its score: how likely the
    label is wrong, so Label Studio's prediction-score order is Loupe's queue order) as a prediction."""
    task: dict = {
        "data": {"image": image, "split": row.split, "loupe_id": row.id},
        "annotations": [{"result": [_choice(row.label, f"loupe-{row.id}")]}],
    }
    if result is not None:
        prediction: dict = {"model_version": scorer, "result": [_choice(result.predicted_label, f"loupe-{row.id}-p")]}
        score = _label_error_score(result, row.label)
        if score is not None:
            prediction["score"] = score
        task["predictions"] = [prediction]
    return task


def labelstudio_config(labels: list[str]) -> str:
    """Label Studio's labeling config for the exported tasks: one Choices (label) on the Image (image)."""
    choices = "".join(f"    <Choice value={quoteattr(label)}/>\n" for label in labels)
    return (
        '<View>\n  <Image name="image" value="$image"/>\n'
        f'  <Choices name="label" toName="image" choice="single">\n{choices}  </Choices>\n</View>\n'
    )


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
