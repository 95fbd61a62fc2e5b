"""Imports from folders, zips and files: every rejection reason with a real bad file."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest
from conftest import distinct_images, image_bytes, open_context
from PIL import Image
from test_decisions import delete_as_expert

from db import images as image_db
from db.imports import list_rejections
from db.labels import list_label_names
from db.stats import dataset_stats
from labeling.imports.ingest import import_paths
from labeling.imports.split import assign_split
from models.imagecheck import RejectReason


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def bomb_png() -> bytes:
    """A 20,000 × 10,000 one-bit PNG: 200 Mpixels in a few kilobytes."""
    buffer = io.BytesIO()
    Image.new("1", (20_000, 10_000), 0).save(buffer, "PNG")
    return buffer.getvalue()


def test_class_folders_become_labels(context, tmp_path):
    for i, data in enumerate(distinct_images(3)):
        write(tmp_path / "in" / "cat" / f"c{i}.png", data)
    for i in range(2):
        write(tmp_path / "in" / "dog" / f"d{i}.jpg", image_bytes("JPEG", color=(i * 50, 10, 10)))
    summary = import_paths(context, [tmp_path / "in"])
    assert (summary.added, summary.duplicates, summary.rejected) == (5, 0, [])
    stats = dataset_stats(context.database)
    assert {label: sum(c.values()) for label, c in stats.by_label.items()} == {"cat": 3, "dog": 2}
    row = image_db.find_by_hash(
        context.database, image_db.iter_active_labeled(context.database).__next__().content_hash
    )
    assert context.store.absolute(row.stored_path).is_file()
    assert context.store.absolute(row.thumb_path).is_file()
    assert row.original_name == "c0.png" and row.source.endswith("cat/c0.png")


def test_flat_folder_imports_unlabeled(context, tmp_path):
    for i, data in enumerate(distinct_images(2)):
        write(tmp_path / "flat" / f"{i}.png", data)
    summary = import_paths(context, [tmp_path / "flat"])
    assert summary.added == 2
    stats = dataset_stats(context.database)
    assert stats.unlabeled == 2 and stats.by_label == {}


def test_duplicates_are_not_stored_twice(context, tmp_path):
    data = image_bytes()
    write(tmp_path / "a" / "cat" / "one.png", data)
    write(tmp_path / "a" / "cat" / "same-content.png", data)
    first = import_paths(context, [tmp_path / "a"])
    second = import_paths(context, [tmp_path / "a"])
    assert (first.added, first.duplicates) == (1, 1)
    assert (second.added, second.duplicates) == (0, 2)
    assert image_db.count_images(context.database) == 1
    assert len(list((context.settings.data_dir / "images").rglob("*.png"))) == 1


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("empty.png", lambda: b"", RejectReason.EMPTY),
        ("truncated.png", lambda: image_bytes("PNG", size=(200, 200))[:300], RejectReason.TRUNCATED),
        ("truncated.jpg", lambda: distinct_jpeg()[:-400], RejectReason.TRUNCATED),
        ("page.jpg", lambda: b"<!doctype html><html><body>Not found</body></html>", RejectReason.NOT_AN_IMAGE),
        ("notes.txt", lambda: b"just some text", RejectReason.NOT_AN_IMAGE),
        ("scan.tiff", lambda: image_bytes("TIFF"), RejectReason.UNSUPPORTED_FORMAT),
        ("bomb.png", bomb_png, RejectReason.TOO_MANY_PIXELS),
    ],
)
def test_bad_files_are_rejected_with_reason_and_change_nothing(context, tmp_path, name, make, reason):
    good = write(tmp_path / "in" / "cat" / "good.png", image_bytes())
    bad = write(tmp_path / "in" / "cat" / name, make())
    summary = import_paths(context, [tmp_path / "in"])
    assert summary.added == 1
    assert [(r.item, r.reason) for r in summary.rejected] == [(str(bad.resolve()), reason)]
    recorded = list_rejections(context.database, summary.batch_id)
    assert [(r.item, r.reason) for r in recorded] == [(str(bad.resolve()), reason.value)]
    assert recorded[0].detail
    assert image_db.count_images(context.database) == 1
    assert good.exists()


def distinct_jpeg() -> bytes:
    image = Image.effect_noise((160, 120), 60).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_files_above_the_byte_limit_are_rejected(tmp_path, database_url):
    context = open_context(tmp_path / "data", database_url, max_image_bytes=2_000)
    write(tmp_path / "in" / "big.jpg", distinct_jpeg())
    summary = import_paths(context, [tmp_path / "in"])
    assert [r.reason for r in summary.rejected] == [RejectReason.TOO_LARGE]
    assert image_db.count_images(context.database) == 0
    context.database.dispose()


def make_zip(path, entries: dict[str, bytes], symlinks: dict[str, str] | None = None):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def test_zip_of_a_folder_imports_like_the_folder(context, tmp_path):
    images = distinct_images(4)
    archive = make_zip(
        tmp_path / "pets.zip",
        {
            "pets/cat/a.png": images[0],
            "pets/cat/b.png": images[1],
            "pets/dog/c.png": images[2],
            "pets/loose.png": images[3],
            "__MACOSX/pets/._a.png": b"resource fork",
        },
    )
    summary = import_paths(context, [archive])
    assert (summary.added, summary.rejected) == (4, [])
    stats = dataset_stats(context.database)
    assert {label: sum(c.values()) for label, c in stats.by_label.items()} == {"cat": 2, "dog": 1}
    assert stats.unlabeled == 1


def test_zip_slip_absolute_and_symlink_entries_are_refused(context, tmp_path):
    images = distinct_images(3)
    archive = make_zip(
        tmp_path / "evil.zip",
        {"cat/ok.png": images[0], "../../escape.png": images[1], "/etc/abs.png": images[2]},
        symlinks={"cat/link.png": "/etc/passwd"},
    )
    summary = import_paths(context, [archive])
    assert summary.added == 1
    assert sorted((r.item.split(":", 1)[1], r.reason) for r in summary.rejected) == [
        ("../../escape.png", RejectReason.UNSAFE_PATH),
        ("/etc/abs.png", RejectReason.UNSAFE_PATH),
        ("cat/link.png", RejectReason.UNSAFE_PATH),
    ]
    assert not (tmp_path.parent / "escape.png").exists()
    assert image_db.count_images(context.database) == 1


def test_corrupt_zip_is_one_rejection(context, tmp_path):
    broken = write(tmp_path / "broken.zip", b"PK\x03\x04 this is no zip")
    summary = import_paths(context, [broken])
    assert summary.added == 0 and len(summary.rejected) == 1


def test_bad_label_is_refused(context, tmp_path):
    write(tmp_path / "one.png", image_bytes())
    summary = import_paths(context, [tmp_path / "one.png"], label="   ")
    assert [r.reason for r in summary.rejected] == [RejectReason.UNKNOWN_LABEL]
    assert list_label_names(context.database) == []


def test_split_is_deterministic_and_near_the_requested_fraction():
    digests = [f"{i:064x}" for i in range(4000)]
    splits = [assign_split(d, seed=42, valid_pct=0.2) for d in digests]
    assert splits == [assign_split(d, seed=42, valid_pct=0.2) for d in digests]
    assert 0.17 < splits.count("valid") / len(splits) < 0.23
    assert splits != [assign_split(d, seed=7, valid_pct=0.2) for d in digests]


def test_split_survives_deletes_and_reimports(context, tmp_path):
    images = distinct_images(30)
    for i, data in enumerate(images):
        write(tmp_path / "in" / "cat" / f"{i}.png", data)
    import_paths(context, [tmp_path / "in"])
    before = {r.content_hash: r.split for r in image_db.iter_active_labeled(context.database)}
    assert set(before.values()) == {"train", "valid"}
    victim = image_db.find_by_hash(context.database, next(iter(before)))
    delete_as_expert(context, victim.id)
    for i, data in enumerate(distinct_images(40)[30:]):
        write(tmp_path / "more" / "cat" / f"{i}.png", data)
    import_paths(context, [tmp_path / "more", tmp_path / "in"])
    after = {r.content_hash: r.split for r in image_db.iter_active_labeled(context.database)}
    assert all(after[h] == split for h, split in before.items() if h != victim.content_hash)
    assert image_db.find_by_hash(context.database, victim.content_hash).status == "deleted"
    assert len(after) == 39


def test_zip_inside_a_folder_is_refused_with_advice(context, tmp_path):
    (tmp_path / "in").mkdir()
    make_zip(tmp_path / "in" / "inner.zip", {"cat/a.png": image_bytes()})
    summary = import_paths(context, [tmp_path / "in"])
    assert [(r.reason, "import the zip by its own path" in r.detail) for r in summary.rejected] == [
        (RejectReason.NOT_AN_IMAGE, True)
    ]
