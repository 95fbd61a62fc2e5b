"""A model version to take away: one zip with the ONNX model, the fastai export, its classes and a model card.

A head version (training/head.py) has no fastai export: its zip holds the ONNX graph, its classes and the card.

The card (MODEL_CARD.md) is written from what Loupe recorded when the version was trained: its folder's
meta.json, the training run's row and the version's row (status, the promotion gate's verdict). It lives
in training/ because it reads the run's records and draws its confusion matrix (training/charts.py).
"""

from __future__ import annotations

import io
import json
import re
import secrets
import shutil
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path

from context import Context
from db import model_versions as version_db
from db import runs as run_db
from db.schema import as_utc
from errors import Conflict, LoupeError, NotFound
from models.registry import CLASSES_FILE, FASTAI_FILE, META_FILE, ONNX_FILE, model_inputs, read_meta
from models.specs import HALF_STATS
from training.charts import confusion_matrix
from training.evaluate import per_class_metrics

CARD_FILE = "MODEL_CARD.md"
CONFUSION_FILE = "confusion_matrix.png"
MODEL_FILES = (ONNX_FILE, FASTAI_FILE, CLASSES_FILE)  # copied from the version folder as they are
HEAD_MODEL_FILES = (ONNX_FILE, CLASSES_FILE)  # a head on cached embeddings: one ONNX graph, no fastai export
MAX_VERSION_CHARS = 50  # model_versions.version's column width


class UnknownVersion(NotFound):
    """No model version has this name."""


class VersionPruned(LoupeError):
    """The version's folder was removed to keep only the newest few; its row stays."""

    status = 410


class VersionIncomplete(Conflict):
    """The version's folder lacks a file the archive needs; the message names it."""


class ArchiveExists(Conflict):
    """The file an archive was asked to be written to exists already."""


def archive_name(version: str) -> str:
    """The archive's file name: loupe-<version>.zip."""
    return f"loupe-{version}.zip"


def version_folder(context: Context, version: str) -> tuple[version_db.VersionRow, Path]:
    """The version's row and its folder holding every file the archive needs; else a refusal saying why."""
    # No version name is longer or holds a control character (PostgreSQL refuses NUL in a query).
    plausible = len(version) <= MAX_VERSION_CHARS and version.isprintable()
    row = version_db.get_version(context.database, version) if plausible else None
    if row is None:
        raise UnknownVersion(f"there is no model version {version!r}; `loupe versions` lists them")
    if row.status == "pruned":
        raise VersionPruned(
            f"model version {version} was pruned (Loupe keeps the newest few): its files are gone, "
            "so it cannot be archived; choose a kept version"
        )
    folder = context.settings.data_dir / row.path
    wanted = (
        (*model_files(read_meta(folder)), META_FILE) if (folder / META_FILE).is_file() else (*MODEL_FILES, META_FILE)
    )
    missing = [name for name in wanted if not (folder / name).is_file()]
    if missing:
        raise VersionIncomplete(
            f"model version {version} lacks {', '.join(missing)} in {folder}, so it cannot be archived"
        )
    return row, folder


def model_files(meta: dict) -> tuple[str, ...]:
    """The files of a version's folder its archive copies, by the version's kind."""
    return HEAD_MODEL_FILES if meta.get("kind") == "head" else MODEL_FILES


def build_archive(context: Context, version: str, into: Path | None = None) -> Path:
    """Write loupe-<version>.zip into a new private folder (made inside `into`, else the system's temp folder).

    Returns the zip's path; the caller removes its folder (path.parent) when done with it. Nothing is
    written before the refusals (unknown, pruned, incomplete version), and nothing in the version's folder.
    """
    row, folder = version_folder(context, version)
    run = run_db.get_run(context.database, row.run_id) if row.run_id is not None else None
    meta = read_meta(folder)
    classes = json.loads((folder / CLASSES_FILE).read_text())
    validation = _validation(meta, run, classes)
    picture = _confusion_png(validation["confusion_matrix"], classes) if validation else None
    decisions = run_db.decisions_included(context.database, [run.id]).get(run.id) if run else None
    card = model_card(row, meta, classes, run, validation, picture is not None, decisions)
    base = Path(into) if into is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    # A name nobody can guess: in the Admin tab's file folder, only the admin who asked learns it.
    private = base / f"loupe-archive-{secrets.token_hex(16)}"
    private.mkdir(mode=0o700)
    path = private / archive_name(row.version)
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in model_files(meta):
                archive.write(folder / name, name)
            archive.writestr(_readable(CARD_FILE), card)
            if picture is not None:
                archive.writestr(_readable(CONFUSION_FILE), picture)
    except FileNotFoundError:
        shutil.rmtree(private, ignore_errors=True)
        # Pruned (or removed by hand) between the check and the copy.
        raise VersionIncomplete(f"model version {version}'s files disappeared while it was being archived") from None
    except BaseException:
        shutil.rmtree(private, ignore_errors=True)
        raise
    return path


def _readable(name: str) -> zipfile.ZipInfo:
    """A zip entry for generated bytes, readable by all once unzipped (writestr's default is owner-only)."""
    entry = zipfile.ZipInfo(name, date_time=datetime.now().timetuple()[:6])
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = 0o644 << 16
    return entry


def save_archive(context: Context, version: str, destination: Path) -> Path:
    """Write the version's archive to destination (a new file, or loupe-<version>.zip inside a folder); its path.

    The zip is built beside the destination and renamed into place, so the file appears only complete.
    """
    destination = Path(destination)
    if destination.is_dir():
        destination = destination / archive_name(version)
    if destination.exists():
        raise ArchiveExists(f"{destination} exists already; choose another file name or remove it")
    built = build_archive(context, version, into=destination.parent)
    try:
        built.replace(destination)
    finally:
        shutil.rmtree(built.parent, ignore_errors=True)
    return destination


def _validation(meta: dict, run: run_db.RunRow | None, classes: list[str]) -> dict | None:
    """The validation metrics recorded for the version: from its meta.json, else from its run; None if neither."""
    for recorded in (meta.get("metrics") or {}, (run.metrics if run else {})):
        if recorded.get("confusion_matrix") and recorded.get("classes", classes) == classes:
            return {
                "confusion_matrix": recorded["confusion_matrix"],
                "error_rate": recorded.get("error_rate"),
                "valid_count": recorded.get("valid_count"),
                "most_confused": (run.metrics if run else {}).get("most_confused", []),
            }
    return None


def _confusion_png(counts: list[list[int]], classes: list[str]) -> bytes:
    figure = confusion_matrix(counts, classes)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


# CommonMark reads a backslash before any of these as the plain character; labels are user text.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|&!()~])")


def _md(value) -> str:
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(value))


def _moment(moment: datetime | None) -> str:
    return f"{as_utc(moment):%Y-%m-%d %H:%M} UTC" if moment else "never"


def _share(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "—"


def model_card(
    row: version_db.VersionRow,
    meta: dict,
    classes: list[str],
    run: run_db.RunRow | None,
    validation: dict | None,
    has_picture: bool,
    decisions: int | None = None,
) -> str:
    """MODEL_CARD.md: what the version is, what it was trained on, how well it does, and how to use it."""
    sections = [
        _about(row, meta, run),
        _classes(classes),
        _data(meta, run, decisions),
        _metrics(classes, validation, has_picture),
        _parameters(meta, run),
        _gate(row, run),
        _usage(meta),
    ]
    return "\n\n".join(sections) + "\n"


STATUS_WORDS = {
    "promoted": "promoted: Loupe serves it",
    "candidate": "candidate: trained, not serving",
    "retired": "retired: served once, replaced since",
}


def _about(row: version_db.VersionRow, meta: dict, run: run_db.RunRow | None) -> str:
    status = STATUS_WORDS.get(row.status, row.status)
    lines = [
        f"# Loupe model {_md(row.version)}",
        "",
        "| | |",
        "|---|---|",
        f"| version | {_md(row.version)} |",
        f"| created | {_moment(row.created_at)} |",
        f"| status | {status}" + (f" (last promoted {_moment(row.promoted_at)})" if row.promoted_at else "") + " |",
        f"| training run | {_run_line(run)} |",
        f"| architecture | {_architecture(meta)} |",
        f"| trained on | {_md(meta.get('device', 'not recorded'))} |",
        *(f"| input | {_input_line(given)} |" for given in model_inputs(meta)),
        "| output | `logits`: `(batch, classes)`, in the order of `classes.json`; softmax gives probabilities |",
    ]
    return "\n".join(lines)


def _input_line(given: dict) -> str:
    size, mean, std = given["size"], given["mean"], given["std"]
    normalised = "(x − 0.5) / 0.5" if [mean, std] == list(HALF_STATS) else f"(x − mean) / std, mean {mean}, std {std}"
    return (
        f"`{given['name']}`: float32 `(batch, 3, {size}, {size})`, RGB, pixels scaled to [0, 1] then normalised "
        f"{normalised} per channel; the image centre-cropped to a square, then resized bilinearly to {size} px"
    )


def _architecture(meta: dict) -> str:
    if meta.get("kind") != "head":
        return _md(meta.get("arch", "not recorded"))
    head = meta.get("head") or {}
    encoders = ", ".join(head.get("encoders", [])) or "the ranking's encoders"
    return _md(
        f"a logistic-regression head (C = {head.get('C')}) on the image embeddings Loupe's ranking caches "
        f"({encoders}), with the encoders in the same graph"
    )


def _run_line(run: run_db.RunRow | None) -> str:
    if run is None:
        return "none recorded (the version was made outside a training run)"
    seconds = f", {run.seconds:.0f} s" if run.seconds is not None else ""
    return f"{run.id} ({_md(run.trigger)}, {_md(run.status)}{seconds})"


def _classes(classes: list[str]) -> str:
    listed = "\n".join(f"{index}. {_md(name)}" for index, name in enumerate(classes))
    return (
        f"## Classes\n\n{len(classes)} classes, numbered as the model's outputs (`classes.json` holds the same "
        f"order):\n\n{listed}"
    )


def _data(meta: dict, run: run_db.RunRow | None, decisions: int | None) -> str:
    data = meta.get("data") or {}
    recorded = run.metrics if run else {}
    images = data.get("images", run.image_count if run else None)
    digest = data.get("snapshot") or recorded.get("snapshot")
    last_decision = data.get("last_decision_id", run.last_decision_id if run else None)
    counts = data.get("class_counts") or recorded.get("class_counts")
    lines = ["## Data it was trained on", ""]
    if images is None:
        return "\n".join([*lines, "Not recorded."])
    lines.append(f"{images} active labeled images, with the labels and splits Loupe held when the run started.")
    if decisions is not None or last_decision is not None:
        upto = f" (up to decision #{last_decision})" if last_decision is not None else ""
        lines.append(f"Review decisions included: {decisions if decisions is not None else 'not counted'}{upto}.")
    if digest:
        lines.append(f"Snapshot `{digest}` (a hash of which images with which labels and splits).")
    if not counts:
        lines += ["", "Images per class and split: not recorded (trained before Loupe recorded them)."]
        return "\n".join(lines)
    lines += ["", "| class | train | valid |", "|---|---:|---:|"]
    lines += [f"| {_md(name)} | {split['train']} | {split['valid']} |" for name, split in counts.items()]
    train, valid = sum(s["train"] for s in counts.values()), sum(s["valid"] for s in counts.values())
    lines.append(f"| **total** | {train} | {valid} |")
    return "\n".join(lines)


def _metrics(classes: list[str], validation: dict | None, has_picture: bool) -> str:
    lines = ["## Validation metrics", ""]
    if validation is None:
        return "\n".join([*lines, "Not recorded (no training run recorded a confusion matrix for this version)."])
    error_rate, valid_count = validation["error_rate"], validation["valid_count"]
    lines += [
        f"Error rate {_share(error_rate)} on the {valid_count} images of the validation split when it was trained.",
        "",
        "| class | precision | recall | support |",
        "|---|---:|---:|---:|",
    ]
    for found in per_class_metrics(validation["confusion_matrix"], classes):
        recall, precision = _share(found["recall"]), _share(found["precision"])
        lines.append(f"| {_md(found['class'])} | {precision} | {recall} | {found['support']} |")
    if has_picture:
        lines += [
            "",
            "Confusion matrix (rows: actual class, columns: predicted):",
            "",
            f"![confusion matrix]({CONFUSION_FILE})",
        ]
    confused = validation.get("most_confused") or []
    if confused:
        lines += ["", "Most confused (actual → predicted, images):", ""]
        lines += [f"- {_md(actual)} → {_md(predicted)}: {count}" for actual, predicted, count in confused]
    return "\n".join(lines)


def _parameters(meta: dict, run: run_db.RunRow | None) -> str:
    lines = ["## Training parameters", ""]
    if run is None:
        return "\n".join([*lines, f"Not recorded; the image size is {meta.get('size')} px."])
    if meta.get("kind") == "head":
        head = meta.get("head") or {}
        rows = [
            ("kind", "a head on cached embeddings: no epochs, image size or learning rate"),
            ("encoders", _md(", ".join(head.get("encoders", [])) or "not recorded")),
            (
                "features",
                f"{head.get('features')}: each encoder's embedding of unit length, side by side, "
                "signed-square-rooted and standardised",
            ),
            ("head", f"scikit-learn `LogisticRegression`, C = {head.get('C')}, trained on the train split"),
        ]
        return "\n".join([*lines, "| parameter | value |", "|---|---|", *(f"| {n} | {v} |" for n, v in rows)])
    params, recorded = run.params, run.metrics
    found_lr = (recorded.get("lr_find") or {}).get("suggested_lr")
    lr_used = recorded.get("lr", params.get("lr"))
    lr = f"{lr_used:g}" if isinstance(lr_used, int | float) else "not recorded"
    if found_lr:
        lr += f" (lr_find suggested {found_lr:.2g})"
    rows = [
        ("architecture", _md(run.arch)),
        ("weights", "the ImageNet weights shipped with Loupe" if not params.get("weights") else _md(params["weights"])),
        ("epochs", f"{params.get('freeze_epochs')} frozen (head only), then {params.get('epochs')} unfrozen"),
        ("learning rate", f"{lr}; the body learns at lr/200 to lr/2 once unfrozen, like fastai's `fine_tune`"),
        ("image size", f"{params.get('size')} px"),
        ("batch size", str(params.get("batch_size"))),
        ("device", _md(run.device or "not recorded")),
    ]
    return "\n".join([*lines, "| parameter | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def _gate(row: version_db.VersionRow, run: run_db.RunRow | None) -> str:
    verdict = row.metrics.get("gate") or (run.metrics.get("gate") if run else None)
    lines = ["## Promotion gate", ""]
    if not verdict:
        return "\n".join([*lines, "Not judged: it was trained without promotion (`--no-promote`) or made by hand."])
    passed = "**Passed**" if verdict.get("promote") else "**Failed**"
    lines.append(f"{passed}: {_md(verdict.get('reason', ''))}.")
    details = [
        ("this version's error rate", _share(verdict.get("candidate_error"))),
        ("then promoted", _md(verdict.get("incumbent") or "none")),
        ("its error rate", _share(verdict.get("incumbent_error"))),
        ("tolerance", _share(verdict.get("tolerance"))),
        ("validation images judged on", str(verdict.get("valid_images"))),
    ]
    return "\n".join([*lines, "", "| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in details)])


def _usage(meta: dict) -> str:
    inputs = [(given["name"], given["size"], given["mean"], given["std"]) for given in model_inputs(meta)]
    feeds = "{name: prepared(image, size, mean, std) for name, size, mean, std in INPUTS}"
    code = f'''## How to use it

With ONNX Runtime (`pip install onnxruntime numpy pillow`), as Loupe's server predicts:

```python
import json

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

INPUTS = {inputs!r}  # (input name, image size, mean, std)
classes = json.load(open("classes.json"))
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])


def prepared(image, size, mean, std):
    """The image centre-cropped to a square, resized to size px, normalised: (1, 3, size, size)."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
    x = (np.asarray(image, dtype=np.float32) / 255 - mean) / std
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def predict(path):
    """[(class, probability)], most likely first."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    logits = session.run(None, {feeds})[0][0]
    p = np.exp(logits - logits.max())
    return sorted(zip(classes, (p / p.sum()).tolist()), key=lambda pair: -pair[1])


print(predict("image.jpg")[:3])
```'''
    if meta.get("kind") == "head":
        return code + (
            "\n\nA head version has no fastai export: the graph holds the encoders and the head, and needs only "
            "ONNX Runtime."
        )
    return (
        code
        + """

With fastai (2.8), where Loupe is installed (`pip install -e` its checkout): `export.pkl` refers to Loupe's
backbone and callback classes by name. It is a pickle: load only one you trust.

```python
from fastai.vision.all import load_learner

learn = load_learner("export.pkl")
label, index, probabilities = learn.predict("image.jpg")
```"""
    )
