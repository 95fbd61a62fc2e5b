"""Named queries and commands on images."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from db.engine import Database
from db.labels import get_or_create_label
from db.schema import Image, Label


@dataclass(frozen=True)
class NewImage:
    """What an import knows about an image before it is in the database."""

    content_hash: str
    stored_path: str
    thumb_path: str
    original_name: str
    source: str
    format: str
    byte_size: int
    width: int
    height: int
    label: str | None
    split: str
    batch_id: int | None


@dataclass(frozen=True)
class ImageRow:
    """An image as the rest of Loupe sees it."""

    id: int
    content_hash: str
    stored_path: str
    thumb_path: str
    original_name: str
    source: str
    width: int
    height: int
    label: str | None
    status: str
    split: str


def _row(image: Image, label_name: str | None) -> ImageRow:
    return ImageRow(
        id=image.id,
        content_hash=image.content_hash,
        stored_path=image.stored_path,
        thumb_path=image.thumb_path,
        original_name=image.original_name,
        source=image.source,
        width=image.width,
        height=image.height,
        label=label_name,
        status=image.status,
        split=image.split,
    )


def find_by_hash(database: Database, content_hash: str) -> ImageRow | None:
    """The image with this content hash, whatever its status, or None."""
    with database.read() as session:
        found = session.execute(
            select(Image, Label.name)
            .outerjoin(Label, Image.label_id == Label.id)
            .where(Image.content_hash == content_hash)
        ).first()
        return _row(*found) if found else None


def get_image(database: Database, image_id: int) -> ImageRow | None:
    """The image with this id, or None."""
    with database.read() as session:
        found = session.execute(
            select(Image, Label.name).outerjoin(Label, Image.label_id == Label.id).where(Image.id == image_id)
        ).first()
        return _row(*found) if found else None


def add_image(database: Database, new: NewImage) -> tuple[ImageRow, bool]:
    """Insert the image unless its content hash is known; returns (row, created)."""
    try:
        with database.write() as session:
            existing = session.scalar(select(Image).where(Image.content_hash == new.content_hash))
            if existing is None:
                label = get_or_create_label(session, new.label) if new.label else None
                image = Image(
                    content_hash=new.content_hash,
                    stored_path=new.stored_path,
                    thumb_path=new.thumb_path,
                    original_name=new.original_name,
                    source=new.source,
                    format=new.format,
                    byte_size=new.byte_size,
                    width=new.width,
                    height=new.height,
                    label_id=label.id if label else None,
                    split=new.split,
                    batch_id=new.batch_id,
                )
                session.add(image)
                session.flush()
                return _row(image, new.label), True
    except IntegrityError:  # a concurrent import stored the same content first
        pass
    found = find_by_hash(database, new.content_hash)
    assert found is not None
    return found, False


def add_images_bulk(database: Database, news: list[NewImage]) -> None:
    """Insert many new images in one transaction (benchmarks seeding large queues; hashes must be new)."""
    with database.write() as session:
        label_ids = {name: get_or_create_label(session, name).id for name in {n.label for n in news if n.label}}
        session.execute(
            insert(Image),
            [
                {
                    "content_hash": n.content_hash,
                    "stored_path": n.stored_path,
                    "thumb_path": n.thumb_path,
                    "original_name": n.original_name,
                    "source": n.source,
                    "format": n.format,
                    "byte_size": n.byte_size,
                    "width": n.width,
                    "height": n.height,
                    "label_id": label_ids.get(n.label),
                    "split": n.split,
                    "batch_id": n.batch_id,
                }
                for n in news
            ],
        )


def iter_active_labeled(database: Database, batch_size: int = 500) -> Iterator[ImageRow]:
    """Every active image that has a label, in id order."""
    last_id = 0
    while True:
        with database.read() as session:
            rows = session.execute(
                select(Image, Label.name)
                .join(Label, Image.label_id == Label.id)
                .where(Image.status == "active", Image.id > last_id)
                .order_by(Image.id)
                .limit(batch_size)
            ).all()
        if not rows:
            return
        for image, label_name in rows:
            yield _row(image, label_name)
        last_id = rows[-1][0].id


def count_images(database: Database) -> int:
    """How many images are stored, in any status."""
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(Image)) or 0


def newest_image_id(database: Database) -> int:
    """The id of the last image stored (0 when there is none): the quick loop rescores after imports too."""
    with database.read() as session:
        return session.scalar(select(func.max(Image.id))) or 0
