"""Backup while decisions are being written, then restore: the state at the backup comes back whole."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from conftest import distinct_images, open_context

from db import decisions as decision_db
from db import images as image_db
from db import users as user_db
from db.sqlite_copy import BackupError
from labeling import review
from labeling.imports.ingest import import_paths
from labeling.instance.backup import backup, restore


def make_instance(tmp_path):
    context = open_context(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'loupe.db'}")
    (tmp_path / "in" / "cat").mkdir(parents=True)
    for index, data in enumerate(distinct_images(30)):
        (tmp_path / "in" / "cat" / f"{index}.png").write_bytes(data)
    import_paths(context, [tmp_path / "in"])
    return context, user_db.add_user(context.database, "ann", "expert", "ann-password")


def test_backup_during_writes_then_restore_brings_that_state_back(tmp_path):
    context, ann = make_instance(tmp_path)
    ids = [row.id for row in image_db.iter_active_labeled(context.database)]
    stop = threading.Event()

    def keep_deciding():  # a reviewer at work while the backup runs
        for image_id in ids[10:]:
            if stop.is_set():
                return
            review.decide_on_current(context, ann, image_id, "keep")

    for image_id in ids[:10]:
        review.decide_on_current(context, ann, image_id, "relabel", new_label="dog")
    writer = threading.Thread(target=keep_deciding)
    writer.start()
    summary = backup(context, tmp_path / "backup")
    stop.set()
    writer.join()
    assert summary.database == "sqlite" and summary.files >= 60  # originals and thumbnails
    with sqlite3.connect(tmp_path / "backup" / "loupe.db") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        backed_up = copy.execute("SELECT count(*) FROM decisions").fetchone()[0]
    assert 10 <= backed_up <= 30

    review.decide_on_current(context, ann, ids[0], "delete")  # after the backup
    restored = restore(context, tmp_path / "backup")
    context = open_context(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'loupe.db'}")
    assert len(decision_db.list_decisions(context.database)) == backed_up
    assert image_db.get_image(context.database, ids[0]).status == "active"
    assert image_db.get_image(context.database, ids[0]).label == "dog"
    assert all(
        context.store.absolute(row.stored_path).exists() for row in image_db.iter_active_labeled(context.database)
    )
    assert restored.files == summary.files
    context.database.dispose()


def test_backup_refuses_a_non_empty_folder_and_restore_a_non_backup(tmp_path):
    context, _ = make_instance(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    with pytest.raises(BackupError, match="not empty"):
        backup(context, tmp_path / "full")
    with pytest.raises(BackupError, match="not a Loupe backup"):
        restore(context, tmp_path / "full")
    assert (tmp_path / "full" / "x.txt").read_text() == "mine"
    context.database.dispose()


def test_postgres_backup_gives_pg_dump_advice(context):
    if context.database.is_sqlite:
        pytest.skip("PostgreSQL only")
    from db.sqlite_copy import sqlite_path

    with pytest.raises(BackupError, match="pg_dump"):
        sqlite_path(context.database)
