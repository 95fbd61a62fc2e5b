"""The demo digits and the cleaned-dataset export."""

from __future__ import annotations

import csv

import pytest
from conftest import distinct_images
from test_decisions import delete_as_expert

from db import images as image_db
from db.stats import dataset_stats
from labeling.imports.demo import import_demo, read_flipped
from labeling.imports.ingest import import_paths
from labeling.instance.export import ExportError, export_dataset


def test_demo_imports_the_digits_with_ten_percent_flipped(context):
    seen = []
    summary = import_demo(context, progress=lambda done, total: seen.append((done, total)))
    assert summary.added + summary.duplicates == 1797 and summary.rejected == []
    assert seen[-1] == (1797, 1797)
    stats = dataset_stats(context.database)
    assert sorted(stats.by_label) == [str(d) for d in range(10)]
    flipped = read_flipped(context.settings.data_dir)
    assert len(flipped) == 180
    assert all(true != given for true, given in flipped.values())
    some_hash, (_, given) = next(iter(flipped.items()))
    assert image_db.find_by_hash(context.database, some_hash).label == given
    assert 0.15 < stats.by_split["valid"] / stats.active < 0.25


@pytest.fixture
def small_dataset(context, tmp_path):
    images = distinct_images(6)
    for i, data in enumerate(images):
        folder = tmp_path / "in" / ("cat" if i < 4 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.png").write_bytes(data)
    (tmp_path / "in" / "unlabeled.png").write_bytes(distinct_images(7)[6])
    import_paths(context, [tmp_path / "in"])
    deleted = image_db.find_by_hash(context.database, next(image_db.iter_active_labeled(context.database)).content_hash)
    delete_as_expert(context, deleted.id)
    return deleted


def test_export_folders_holds_active_labeled_images_by_split(context, tmp_path, small_dataset):
    summary = export_dataset(context, tmp_path / "out", "folders")
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert summary.images == 5 == len(files)
    assert all(f.split("/")[0] in ("train", "valid") and f.split("/")[1] in ("cat", "dog") for f in files)
    assert not any(small_dataset.content_hash in f for f in files)


def test_export_writes_the_decision_log(context, tmp_path, small_dataset):
    from db.users import add_user
    from labeling import review

    expert = add_user(context.database, "eve", "expert", "eve-password")
    image = next(image_db.iter_active_labeled(context.database))
    review.decide(context, expert, image.id, "relabel", expected_last_id=None, new_label="dog")
    review.undo(context, expert)
    summary = export_dataset(context, tmp_path / "out", "folders")
    with open(tmp_path / "out" / "decisions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert summary.decisions == 3  # the fixture's delete, then eve's two
    assert [(r["user"], r["action"], r["old_label"], r["new_label"]) for r in rows] == [
        ("deleter", "delete", rows[0]["old_label"], rows[0]["old_label"]),
        ("eve", "relabel", image.label, "dog"),
        ("eve", "undo", "dog", image.label),
    ]
    assert rows[2]["undoes"] == rows[1]["id"]


def test_export_csv_is_like_fastais_cleaned_csv(context, tmp_path, small_dataset):
    export_dataset(context, tmp_path / "out", "csv")
    with open(tmp_path / "out" / "cleaned.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5
    assert {r["label"] for r in rows} == {"cat", "dog"}
    assert all((tmp_path / "out" / r["name"]).is_file() for r in rows)
    assert {r["is_valid"] for r in rows} <= {"True", "False"}


def test_export_refuses_a_non_empty_destination(context, tmp_path, small_dataset):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty folder"):
        export_dataset(context, tmp_path / "out", "folders")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]


def test_admin_tab_export_hands_over_one_zip_and_refuses_experts(context, small_dataset):
    import zipfile

    import gradio as gr

    from db.users import add_user
    from ui.admin_dataset import make_handlers

    add_user(context.database, "alice", "admin", "alice-password")
    add_user(context.database, "bob", "expert", "bob-password")
    *_, export = make_handlers(context)
    exported = export("csv", gr.Request(username="alice"), progress=lambda *a, **k: None)
    archive, message = exported["export_file"], exported["export_result"]
    with zipfile.ZipFile(archive) as opened:
        names = set(opened.namelist())
        rows = list(csv.DictReader(opened.read("cleaned.csv").decode().splitlines()))
    files = [name for name in names if name.startswith("images/") and not name.endswith("/")]
    assert {"cleaned.csv", "decisions.csv"} <= names and len(rows) == 5 == len(files)
    assert "Exported **5** images" in message
    assert [p.suffix for p in (context.settings.data_dir / "exports").iterdir()] == [".zip"]  # no folder left behind
    with pytest.raises(gr.Error, match="admin role"):
        export("csv", gr.Request(username="bob"), progress=lambda *a, **k: None)
    with pytest.raises(gr.Error, match="unknown format"):
        export("parquet", gr.Request(username="alice"), progress=lambda *a, **k: None)
