"""Other tools' dataset formats in and out: every reader keeps labels and splits and refuses bad items with
their reasons; every export is loaded by the real library (datasets, torchvision, fastai) and re-imported
into a fresh Loupe with the same labels and splits."""

from __future__ import annotations

import csv
import json
import math
import os
import uuid
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

import pytest
from conftest import POSTGRES_URL, LoopbackSite, distinct_images, image_bytes, open_context, serve_site
from sqlalchemy import create_engine, select, text

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # before datasets is imported: nothing is downloaded

from db import images as image_db  # noqa: E402
from db import scores as score_db  # noqa: E402
from db.imports import list_rejections  # noqa: E402
from db.schema import ImportBatch  # noqa: E402
from labeling.imports.ingest import import_paths  # noqa: E402
from labeling.instance.export import export_dataset  # noqa: E402
from models.imagecheck import RejectReason  # noqa: E402

IMAGES = distinct_images(12)
LABELS = ["cat", "dog", "cat", "dog", "cat", "dog", "cat", "dog", "cat", "dog", "cat", "dog"]
SPLITS = ["train", "validation", "train", "test", "train", "train", "val", "train", "train", "dev", "train", "train"]
LOUPE_SPLIT = {"train": "train", "validation": "valid", "test": "valid", "val": "valid", "dev": "valid"}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def by_hash(context) -> dict[str, tuple[str | None, str]]:
    """Every active image's (label, split), by content hash: what a round trip must keep."""
    rows = image_db.iter_active_labeled(context.database)
    return {row.content_hash: (row.label, row.split) for row in rows}


def name_label_split(context) -> dict[str, tuple[str | None, str]]:
    """(label, split) by original name, labeled or not."""
    with context.database.read() as session:
        ids = session.scalars(select(image_db.Image.id)).all()
    rows = [image_db.get_image(context.database, image_id) for image_id in ids]
    return {row.original_name: (row.label, row.split) for row in rows}


def batch_kind(context, batch_id: int) -> str:
    with context.database.read() as session:
        return session.get(ImportBatch, batch_id).kind


def rejections(context, summary) -> dict[str, str]:
    """Recorded rejections of the batch: item → reason, and the summary says the same."""
    recorded = list_rejections(context.database, summary.batch_id)
    assert all(r.detail for r in recorded)
    assert sorted((r.item, r.reason) for r in recorded) == sorted((r.item, r.reason.value) for r in summary.rejected)
    return {r.item: r.reason for r in recorded}


@pytest.fixture
def fresh(tmp_path, database_url):
    """A second, empty Loupe on the same kind of database: where round trips are re-imported."""
    if database_url.startswith("sqlite"):
        opened = open_context(tmp_path / "fresh-data", f"sqlite:///{tmp_path / 'fresh.db'}")
        yield opened
        opened.database.dispose()
        return
    schema = f"loupe_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    opened = open_context(tmp_path / "fresh-data", f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
    yield opened
    opened.database.dispose()
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def outside(tmp_path) -> Path:
    """A real image outside every dataset folder, which escaping references point at."""
    return write(tmp_path / "outside.png", image_bytes(color=(1, 2, 3)))


def assert_outside_not_imported(context, outside: Path) -> None:
    from db.store import content_hash

    assert image_db.find_by_hash(context.database, content_hash(outside.read_bytes())) is None


# --- readers ---------------------------------------------------------------------------------


def test_csv_list_keeps_labels_and_splits_and_refuses_bad_rows(context, tmp_path, outside):
    folder = tmp_path / "list"
    for i in range(6):
        write(folder / "img" / f"{i}.png", IMAGES[i])
    write(folder / "notes.png", b"just some text, not an image")
    (folder / "link.png").symlink_to(outside)
    rows = [
        ["path", "label", "split"],
        ["img/0.png", "cat", "train"],
        ["img/1.png", "dog", "validation"],
        ["img/2.png", " cat ", "test"],
        ["img/3.png", "", ""],  # unlabeled, split from the hash
        ["img/4.png", "a/b", "train"],
        ["img/5.png", "dog", "holdout"],
        ["../outside.png", "cat", "train"],
        [str(outside), "cat", "train"],
        ["link.png", "cat", "train"],
        ["img/missing.png", "cat", "train"],
        ["notes.png", "cat", "train"],
    ]
    with open(folder / "list.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)

    summary = import_paths(context, [folder / "list.csv"])

    assert summary.added == 4
    assert batch_kind(context, summary.batch_id) == "csv"
    kept = name_label_split(context)
    assert {name: kept[name] for name in ("0.png", "1.png", "2.png")} == {
        "0.png": ("cat", "train"),
        "1.png": ("dog", "valid"),
        "2.png": ("cat", "valid"),
    }
    assert kept["3.png"][0] is None
    reasons = rejections(context, summary)
    assert Counter(reasons.values()) == {
        "unsafe_path": 3,
        "bad_label": 1,
        "bad_split": 1,
        "missing_file": 1,
        "not_an_image": 1,
    }
    assert reasons[str((folder / "img" / "5.png").resolve())] == "bad_split"
    assert reasons["list.csv line 9: " + str(outside)] == "unsafe_path"
    assert image_db.count_images(context.database) == 4
    assert_outside_not_imported(context, outside)


def test_fastai_style_csv_without_a_header_and_with_is_valid(context, tmp_path):
    folder = tmp_path / "plain"
    for i in range(3):
        write(folder / f"{i}.png", IMAGES[i])
    (folder / "plain.csv").write_text("0.png,cat,valid\n# a comment\n\n1.png,dog\n2.png,dog,train\n")
    (folder / "fastai.csv").write_text("name,label,is_valid\n0.png,cat,True\n1.png,dog,False\n2.png,dog,maybe\n")

    plain = import_paths(context, [folder / "plain.csv"])
    assert (plain.added, plain.rejected) == (3, [])
    kept = name_label_split(context)
    assert kept["0.png"] == ("cat", "valid") and kept["2.png"] == ("dog", "train") and kept["1.png"][0] == "dog"

    fastai = import_paths(context, [folder / "fastai.csv"])
    assert (fastai.added, fastai.duplicates) == (0, 2)
    assert [r.reason for r in fastai.rejected] == [RejectReason.BAD_SPLIT]


class ImageSite(LoopbackSite):
    """Serves IMAGES[n] at /img/n.png."""

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        if self.path.startswith("/img/"):
            self.send_body(200, "image/png", IMAGES[int(self.path.split("/")[-1].split(".")[0])])
        else:
            self.send_body(404, "text/plain", b"no such thing")


def test_urls_in_a_list_are_fetched_with_the_address_check(tmp_path, database_url):
    listed = tmp_path / "urls.csv"
    with serve_site(ImageSite) as site:
        listed.write_text(f"url,label\n{site}/img/7.png,cat\n{site}/img/8.png,dog\n{site}/nothing.png,dog\n")
        strict = open_context(tmp_path / "strict", database_url)
        refused = import_paths(strict, [listed])
        strict.database.dispose()
        # The same database again, now allowed to reach loopback (as in a closed lab network).
        allowed = open_context(tmp_path / "allowed", database_url, allow_private_urls=True)
        fetched = import_paths(allowed, [listed])
        kept = name_label_split(allowed)
        allowed.database.dispose()
    assert refused.added == 0 and {r.reason for r in refused.rejected} == {RejectReason.UNSAFE_URL}
    assert fetched.added == 2 and [r.reason for r in fetched.rejected] == [RejectReason.DOWNLOAD_FAILED]
    assert kept["7.png"][0] == "cat" and kept["8.png"][0] == "dog"


def labelstudio_task(task_id: int, image: str, annotations: list[dict], split: str | None = None) -> dict:
    """A task as Label Studio 1.23's JSON export writes it."""
    data = {"image": image} | ({"split": split} if split else {})
    return {
        "id": task_id,
        "annotations": annotations,
        "file_upload": None,
        "drafts": [],
        "predictions": [],
        "data": data,
        "meta": {},
        "created_at": "2026-11-02T09:14:03.215722Z",
        "updated_at": "2026-11-02T09:20:41.118311Z",
        "inner_id": task_id,
        "total_annotations": len(annotations),
        "cancelled_annotations": sum(a["was_cancelled"] for a in annotations),
        "total_predictions": 0,
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 3,
        "updated_by": 1,
        "comment_authors": [],
    }


def ls_annotation(annotation_id: int, choice: str, updated_at: str, cancelled: bool = False) -> dict:
    """An annotation as Label Studio 1.23 exports it (a Choices control named "choice" on the Image "image")."""
    result = [
        {
            "value": {"choices": [choice]},
            "id": f"r{annotation_id}x9Kq",
            "from_name": "choice",
            "to_name": "image",
            "type": "choices",
            "origin": "manual",
        }
    ]
    return {
        "id": annotation_id,
        "completed_by": 1,
        "result": [] if cancelled else result,
        "was_cancelled": cancelled,
        "ground_truth": False,
        "created_at": updated_at,
        "updated_at": updated_at,
        "draft_created_at": None,
        "lead_time": 4.2,
        "prediction": {},
        "result_count": 0 if cancelled else 1,
        "unique_id": str(uuid.uuid4()),
        "import_id": None,
        "last_action": None,
        "bulk_created": False,
        "task": annotation_id,
        "project": 3,
        "updated_by": 1,
        "parent_prediction": None,
        "parent_annotation": None,
        "last_created_by": None,
    }


def test_label_studio_json_export(context, tmp_path, outside):
    files = tmp_path / "ls-files"
    for i in range(5):
        write(files / "pets" / f"{i}.png", IMAGES[i])
    local = "/data/local-files/?d=pets/"
    tasks = [
        labelstudio_task(
            1,
            local + "0.png",
            [
                ls_annotation(11, "cat", "2026-11-02T09:15:00.000000Z"),
                ls_annotation(12, "dog", "2026-11-03T10:00:00.000000Z"),  # the newest answer wins
            ],
            split="train",
        ),
        labelstudio_task(
            2,
            local + "1.png",
            [
                ls_annotation(21, "cat", "2026-11-02T09:15:00.000000Z"),
                ls_annotation(22, "dog", "2026-11-04T10:00:00.000000Z", cancelled=True),  # skipped: not an answer
            ],
            split="validation",
        ),
        labelstudio_task(3, local + "2.png", []),  # not annotated yet: unlabeled
        labelstudio_task(4, local + "3.png", [ls_annotation(41, "cat", "2026-11-02T09:15:00.000000Z")], "holdout"),
        labelstudio_task(5, "/data/upload/3/5d1c7a2e-4.png", [ls_annotation(51, "cat", "2026-11-02T09:15:00Z")]),
        labelstudio_task(6, "/data/local-files/?d=../outside.png", [ls_annotation(61, "cat", "2026-11-02T09:15:00Z")]),
        labelstudio_task(7, "http://127.0.0.1:9/img/4.png", [ls_annotation(71, "cat", "2026-11-02T09:15:00Z")]),
    ]
    export = tmp_path / "export" / "project-3-at-2026-11-05-10-12-1f3e8a2b.json"
    export.parent.mkdir()
    export.write_text(json.dumps(tasks, indent=2))

    summary = import_paths(context, [export], files_root=files)

    assert summary.added == 3
    assert batch_kind(context, summary.batch_id) == "labelstudio"
    kept = name_label_split(context)
    assert kept["0.png"] == ("dog", "train") and kept["1.png"] == ("cat", "valid") and kept["2.png"][0] is None
    reasons = rejections(context, summary)
    assert sorted(reasons.values()) == ["bad_split", "missing_file", "unsafe_path", "unsafe_url"]
    upload = next(r for r in summary.rejected if r.reason == RejectReason.MISSING_FILE)
    assert "Label Studio connection" in upload.detail and upload.item.startswith(export.name + " task 5")
    assert image_db.count_images(context.database) == 3
    assert_outside_not_imported(context, outside)


def test_label_studio_json_min_export(context, tmp_path):
    folder = tmp_path / "ls-min"
    for i in range(4):
        write(folder / "pets" / f"{i}.png", IMAGES[i])
    rows = [
        {
            "image": "/data/local-files/?d=pets/0.png",
            "id": 1,
            "choice": "cat",
            "annotator": "ann@example.com",
            "annotation_id": 11,
            "created_at": "2026-11-02T09:15:00.000000Z",
            "updated_at": "2026-11-02T09:15:00.000000Z",
            "lead_time": 3.1,
            "split": "val",
        },
        {
            "image": "/data/local-files/?d=pets/1.png",
            "id": 2,
            "choice": {"choices": ["dog", "cat"]},  # several chosen: the first is the label
            "annotator": "ann@example.com",
            "annotation_id": 12,
            "created_at": "2026-11-02T09:16:00.000000Z",
            "updated_at": "2026-11-02T09:16:00.000000Z",
            "lead_time": 2.0,
        },
        {"image": "/data/local-files/?d=pets/2.png", "id": 3},  # not annotated
        {"image": "/data/local-files/?d=pets/3.png", "id": 4, "choice": "ca\tt", "annotator": 1},
        {"image": "pets/\u0000.png", "id": 5, "choice": "cat"},  # NUL: PostgreSQL's text cannot even record it
    ]
    (folder / "min.json").write_text(json.dumps(rows))

    summary = import_paths(context, [folder / "min.json"])  # the files root defaults to the JSON's folder

    kept = name_label_split(context)
    assert summary.added == 3 and kept["0.png"] == ("cat", "valid") and kept["1.png"][0] == "dog"
    assert kept["2.png"][0] is None
    assert [r.reason for r in summary.rejected] == [RejectReason.UNKNOWN_LABEL, RejectReason.MISSING_FILE]
    assert rejections(context, summary)["min.json task 5: pets/\\x00.png"] == "missing_file"


def test_imagefolder_metadata_in_split_folders_and_at_the_root(context, tmp_path, outside):
    root = tmp_path / "hf"
    for i in range(4):
        write(root / "train" / f"{i}.png", IMAGES[i])
    lines = [
        {"file_name": "0.png", "label": "cat"},
        {"file_name": "1.png", "label": "dog", "split": "validation"},  # a split column beats the folder
        {"file_name": "2.png", "label": ["cat", "dog"]},
        {"file_name": "3.png", "label": 7},  # a class index is a label too
        {"file_name": "../../outside.png", "label": "cat"},
        {"file_name": "nope.png", "label": "cat"},
    ]
    text_lines = [json.dumps(line) for line in lines] + ["this is not json"]
    (root / "train" / "metadata.jsonl").write_text("\n".join(text_lines) + "\n")
    write(root / "test" / "cats" / "4.png", IMAGES[4])
    write(root / "test" / "5.png", IMAGES[5])
    (root / "test" / "metadata.csv").write_text("file_name,class,split\ncats/4.png,cat,\n5.png,dog,holdout\n")

    summary = import_paths(context, [root])

    assert batch_kind(context, summary.batch_id) == "imagefolder"
    kept = name_label_split(context)
    assert summary.added == 4
    assert kept == {
        "0.png": ("cat", "train"),
        "1.png": ("dog", "valid"),
        "3.png": ("7", "train"),
        "4.png": ("cat", "valid"),
    }
    reasons = rejections(context, summary)
    assert Counter(reasons.values()) == {"bad_label": 1, "unsafe_path": 1, "missing_file": 2, "bad_split": 1}
    assert "train/metadata.jsonl line 7" in reasons
    assert_outside_not_imported(context, outside)

    flat = tmp_path / "flat"
    write(flat / "train" / "a.png", IMAGES[6])
    write(flat / "validation" / "b.png", IMAGES[7])
    (flat / "metadata.csv").write_text("file_name,label\ntrain/a.png,dog\nvalidation/b.png,cat\n")
    again = import_paths(context, [flat])
    assert again.added == 2 and name_label_split(context)["b.png"] == ("cat", "valid")


def test_class_folders_named_like_splits_stay_class_folders(context, tmp_path):
    for name, data in (("train", IMAGES[0]), ("valid", IMAGES[1])):  # images right inside: these are classes
        write(tmp_path / "vehicles" / name / "x.png", data)
    summary = import_paths(context, [tmp_path / "vehicles"])
    assert summary.added == 2 and batch_kind(context, summary.batch_id) == "folder"
    assert sorted(label for label, _ in by_hash(context).values()) == ["train", "valid"]


# --- round trips ------------------------------------------------------------------------------


@pytest.fixture
def source(context, tmp_path) -> dict[str, tuple[str, str]]:
    """A Loupe holding 12 labeled images with given splits, and two scored; returns what a round trip keeps."""
    folder = tmp_path / "source"
    lines = ["path,label,split"]
    for i, (data, label, split) in enumerate(zip(IMAGES, LABELS, SPLITS, strict=True)):
        write(folder / f"{i}.png", data)
        lines.append(f"{i}.png,{label},{split}")
    (folder / "list.csv").write_text("\n".join(lines) + "\n")
    assert import_paths(context, [folder / "list.csv"]).added == 12
    kept = by_hash(context)
    assert sorted(split for _, split in kept.values()) == sorted(LOUPE_SPLIT[s] for s in SPLITS)
    from labeling.ranking.scoring import serving_scorer

    first, second = list(image_db.iter_active_labeled(context.database))[:2]
    score_db.replace_scores(
        context.database,
        serving_scorer(context),
        [
            score_db.NewScore(first.id, 0.91, first.label, "dog" if first.label == "cat" else "cat", 0.09, []),
            score_db.NewScore(second.id, 0.2, "bird", second.label, None, []),  # scored before a relabel
        ],
    )
    return kept


def reimported(fresh, path: Path, **options) -> dict[str, tuple[str, str]]:
    summary = import_paths(fresh, [path], **options)
    assert summary.rejected == []
    return by_hash(fresh)


def test_imagefolder_export_loads_in_datasets_and_comes_back(context, fresh, tmp_path, source):
    import datasets

    destination = tmp_path / "hf-export"
    export_dataset(context, destination, "imagefolder")

    loaded = datasets.load_dataset("imagefolder", data_dir=str(destination), cache_dir=str(tmp_path / "hf-cache"))

    assert set(loaded) == {"train", "validation"}
    rows = {split: list(loaded[split]) for split in loaded}
    from db.store import content_hash

    seen = {}
    for split, items in rows.items():
        for item in items:
            assert item["split"] == split and item["image"].size == (32, 24)
            row = image_db.get_image(context.database, item["loupe_id"])
            seen[row.content_hash] = (item["label"], {"train": "train", "validation": "valid"}[split])
    assert seen == source
    scores = {item["loupe_id"]: item["score"] for items in rows.values() for item in items}
    first, second = list(image_db.iter_active_labeled(context.database))[:2]
    assert scores[first.id] == pytest.approx(0.91)
    unscored = [score for loupe_id, score in scores.items() if loupe_id != first.id]
    # None where its split has scores (the second image was scored for another label), else NaN (see export.py)
    assert all(score is None or math.isnan(score) for score in unscored) and None in unscored
    assert {content_hash(path.read_bytes()) for path in destination.rglob("*.png")} == set(source)

    assert reimported(fresh, destination) == source


def test_folders_export_loads_in_torchvision_and_fastai_and_comes_back(context, fresh, tmp_path, source):
    from fastai.vision.all import ImageDataLoaders, Resize
    from torchvision.datasets import ImageFolder

    destination = tmp_path / "folders-export"
    export_dataset(context, destination, "folders")
    expected = Counter(source.values())

    train = ImageFolder(str(destination / "train"))
    assert Counter((train.classes[target], "train") for _, target in train.samples) == Counter(
        {key: n for key, n in expected.items() if key[1] == "train"}
    )
    loaders = ImageDataLoaders.from_folder(
        destination, train="train", valid="valid", item_tfms=Resize(16), bs=4, num_workers=0
    )
    assert list(loaders.vocab) == sorted({label for label, _ in source.values()})
    from_fastai = Counter((loaders.vocab[int(y)], "train") for _, y in loaders.train_ds) + Counter(
        (loaders.vocab[int(y)], "valid") for _, y in loaders.valid_ds
    )
    assert from_fastai == expected
    assert loaders.one_batch()[0].shape == (4, 3, 16, 16)

    assert reimported(fresh, destination) == source  # decisions.csv beside the split folders is left alone


def test_csv_export_loads_in_fastai_and_comes_back(context, fresh, tmp_path, source):
    from fastai.vision.all import ImageDataLoaders, Resize

    destination = tmp_path / "csv-export"
    export_dataset(context, destination, "csv")

    loaders = ImageDataLoaders.from_csv(
        destination, csv_fname="cleaned.csv", valid_col="is_valid", item_tfms=Resize(16), bs=4, num_workers=0
    )
    from_fastai = Counter((loaders.vocab[int(y)], "train") for _, y in loaders.train_ds) + Counter(
        (loaders.vocab[int(y)], "valid") for _, y in loaders.valid_ds
    )
    assert from_fastai == Counter(source.values())

    assert reimported(fresh, destination / "cleaned.csv") == source
    assert sorted(name_label_split(fresh)) == sorted(f"{i}.png" for i in range(12))  # original names kept


def test_labelstudio_export_holds_annotations_predictions_and_config_and_comes_back(context, fresh, tmp_path, source):
    destination = tmp_path / "ls-export"
    export_dataset(context, destination, "labelstudio")

    tasks = json.loads((destination / "tasks.json").read_text())
    assert len(tasks) == 12
    first, second = list(image_db.iter_active_labeled(context.database))[:2]
    by_id = {task["data"]["loupe_id"]: task for task in tasks}
    for task in tasks:
        row = image_db.get_image(context.database, task["data"]["loupe_id"])
        assert task["data"]["image"] == f"images/{Path(row.stored_path).name}"
        assert (destination / task["data"]["image"]).is_file() and task["data"]["split"] == row.split
        [result] = task["annotations"][0]["result"]
        assert (result["type"], result["from_name"], result["to_name"]) == ("choices", "label", "image")
        assert result["value"] == {"choices": [row.label]}
    [prediction] = by_id[first.id]["predictions"]
    assert prediction["score"] == pytest.approx(0.91) and prediction["model_version"].startswith("heads:")
    assert prediction["result"][0]["value"]["choices"] != [first.label]
    assert "score" not in by_id[second.id]["predictions"][0]  # its score was for another label
    assert sum("predictions" in task for task in tasks) == 2

    config = ElementTree.fromstring((destination / "label_config.xml").read_text())
    assert config.find("Image").attrib == {"name": "image", "value": "$image"}
    choices = config.find("Choices")
    assert (choices.get("name"), choices.get("toName")) == ("label", "image")
    assert [c.get("value") for c in choices.findall("Choice")] == ["cat", "dog"]

    assert reimported(fresh, destination / "tasks.json") == source


def loupe_env(context) -> dict[str, str]:
    """The environment that points the CLI at context's data folder and database."""
    return {"LOUPE_DATA_DIR": str(context.settings.data_dir), "DATABASE_URL": context.settings.database_url}


def test_cli_exports_label_studio_with_a_prefix_and_imports_it_through_the_files_root(context, fresh, tmp_path, source):
    from test_cli import run_cli

    destination = tmp_path / "served" / "pets"
    exported = run_cli(
        "export", str(destination), "--format", "labelstudio", "--ls-image-prefix", "/data/local-files/?d=pets/",
        env_extra=loupe_env(context),  # the CLI on the source Loupe's data and database
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    tasks = json.loads((destination / "tasks.json").read_text())
    assert len(tasks) == 12
    assert all(task["data"]["image"].startswith("/data/local-files/?d=pets/images/") for task in tasks)

    imported = run_cli(
        "import", str(destination / "tasks.json"), "--files-root", str(tmp_path / "served"), env_extra=loupe_env(fresh)
    )
    assert imported.returncode == 0, imported.stderr
    assert "added 12, duplicates 0, rejected 0" in imported.stdout
    assert by_hash(fresh) == source
