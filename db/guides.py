"""Class guidelines' SQL: per class, an admin's short definition and a few pinned example images."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from db.engine import Database
from db.schema import ClassGuide, Image, User


@dataclass(frozen=True)
class Guide:
    """A class's definition and pinned examples (image id, thumbnail path; examples no longer active left out)."""

    label: str
    definition: str
    examples: list[tuple[int, str]]
    updated_by: str | None
    updated_at: datetime | None


def get_guide(database: Database, label: str) -> Guide | None:
    """The class's guideline, or None when no admin wrote one."""
    with database.read() as session:
        row = session.get(ClassGuide, label)
        if row is None:
            return None
        ids = [int(i) for i in row.example_ids or []]
        thumbs = dict(
            session.execute(select(Image.id, Image.thumb_path).where(Image.id.in_(ids), Image.status == "active")).all()
        )
        author = session.scalar(select(User.name).where(User.id == row.updated_by)) if row.updated_by else None
        return Guide(label, row.definition, [(i, thumbs[i]) for i in ids if i in thumbs], author, row.updated_at)


def save_guide(database: Database, label: str, definition: str, example_ids: list[int], user_id: int) -> None:
    """Write the class's guideline, replacing the one before."""
    with database.write() as session:
        row = session.get(ClassGuide, label, with_for_update=True)
        if row is None:
            session.add(ClassGuide(label=label, definition=definition, example_ids=example_ids, updated_by=user_id))
        else:
            row.definition, row.example_ids, row.updated_by = definition, example_ids, user_id


def active_image_ids(database: Database, image_ids: list[int]) -> set[int]:
    """Which of the ids are active images."""
    with database.read() as session:
        return set(session.scalars(select(Image.id).where(Image.id.in_(image_ids), Image.status == "active")))
