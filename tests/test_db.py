"""The database layer on real SQLite files and, when configured, PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from db import Database
from db import images as image_db
from db import users as user_db
from db.labels import get_or_create_label, list_label_names
from db.schema import Base


def new_image(content_hash: str, label: str | None = "cat", split: str = "train") -> image_db.NewImage:
    return image_db.NewImage(
        content_hash=content_hash,
        stored_path=f"images/{content_hash[:2]}/{content_hash}.png",
        thumb_path=f"thumbs/{content_hash[:2]}/{content_hash}.jpg",
        original_name="x.png",
        source="/somewhere/x.png",
        format="PNG",
        byte_size=10,
        width=4,
        height=3,
        label=label,
        split=split,
        batch_id=None,
    )


def test_migrations_create_exactly_the_models(context):
    with context.database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_upgrade_twice_is_harmless(context):
    context.database.upgrade()
    reopened = Database(context.database.url)
    assert image_db.count_images(reopened) == 0
    reopened.dispose()


def test_sqlite_runs_in_wal_with_foreign_keys_and_busy_timeout(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    database.dispose()


def test_foreign_keys_are_enforced(context):
    with pytest.raises(IntegrityError):
        with context.database.write() as session:
            session.execute(
                text("INSERT INTO decisions (image_id, action, created_at) VALUES (987654, 'keep', CURRENT_TIMESTAMP)")
            )


def test_add_image_stores_once_per_hash(context):
    row, created = image_db.add_image(context.database, new_image("a" * 64))
    again, created_again = image_db.add_image(context.database, new_image("a" * 64, label="dog"))
    assert created and not created_again
    assert again.id == row.id and again.label == "cat"
    assert image_db.count_images(context.database) == 1
    assert list_label_names(context.database) == ["cat"]


def test_failed_write_changes_nothing(context):
    with pytest.raises(RuntimeError):
        with context.database.write() as session:
            get_or_create_label(session, "ghost")
            raise RuntimeError("boom")
    assert list_label_names(context.database) == []


def test_concurrent_writers_all_land(context):
    errors = []

    def add_many(worker: int) -> None:
        try:
            for i in range(15):
                image_db.add_image(context.database, new_image(f"{worker:02d}{i:062d}", label=f"class{i % 3}"))
        except Exception as error:  # collected, asserted below
            errors.append(error)

    threads = [threading.Thread(target=add_many, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert image_db.count_images(context.database) == 60
    assert list_label_names(context.database) == ["class0", "class1", "class2"]


def test_users_hash_passwords_and_authenticate(context):
    user_db.add_user(context.database, "carol", "expert", "correct horse")
    with context.database.read() as session:
        stored = session.execute(text("SELECT password_hash FROM users")).scalar()
    assert "correct horse" not in stored and stored.startswith("scrypt$")
    assert user_db.authenticate(context.database, "carol", "correct horse").role == "expert"
    assert user_db.authenticate(context.database, "carol", "wrong password") is None
    assert user_db.authenticate(context.database, "nobody", "correct horse") is None


def test_reset_password_and_disable_take_effect_despite_the_verified_cache(context):
    user_db.add_user(context.database, "carol", "expert", "correct horse")
    user_db.add_user(context.database, "root", "admin", "admin password")
    assert user_db.authenticate(context.database, "carol", "correct horse") is not None  # now cached
    user_db.set_password(context.database, "carol", "battery staple")
    assert user_db.authenticate(context.database, "carol", "correct horse") is None
    assert user_db.authenticate(context.database, "carol", "battery staple") is not None
    user_db.set_disabled(context.database, "carol", True)
    assert user_db.authenticate(context.database, "carol", "battery staple") is None
    with pytest.raises(user_db.UserError, match="last enabled admin"):
        user_db.set_disabled(context.database, "root", True)


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("dave", "superuser", "long enough", "unknown role"),
        ("dave", "admin", "short", "at least 8"),
        ("  ", "admin", "long enough", "needs a name"),
    ],
)
def test_bad_user_commands_are_refused(context, name, role, password, message):
    with pytest.raises(user_db.UserError, match=message):
        user_db.add_user(context.database, name, role, password)
    assert user_db.list_users(context.database) == []


def test_duplicate_user_is_refused(context):
    user_db.add_user(context.database, "erin", "admin", "long enough")
    with pytest.raises(user_db.UserError, match="exists already"):
        user_db.add_user(context.database, "erin", "expert", "another one")
    assert [u.role for u in user_db.list_users(context.database)] == ["admin"]
