"""Named queries and commands on labels (the classes)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.engine import Database
from db.schema import Label


def get_or_create_label(session: Session, name: str) -> Label:
    """The label called name, created inside the caller's transaction when new."""
    label = session.scalar(select(Label).where(Label.name == name))
    if label is not None:
        return label
    try:
        with session.begin_nested():
            label = Label(name=name)
            session.add(label)
            session.flush()
        return label
    except IntegrityError:  # another writer created it between our select and insert
        return session.scalars(select(Label).where(Label.name == name)).one()


def list_label_names(database: Database) -> list[str]:
    """Every label name, alphabetically."""
    with database.read() as session:
        return list(session.scalars(select(Label.name).order_by(Label.name)))
