"""Expert decisions: an append-only log, and the image's current label and status that follow from it.

Every function here is one short transaction, committed before it returns: nothing an expert
decided waits in memory. A decision made on a stale view (someone else decided the image since the
expert saw it, or it is gone) is refused with StaleDecision and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.engine import Database
from db.labels import get_or_create_label
from db.schema import Decision, Image, Label, User
from errors import LoupeError

ACTIONS = ("keep", "relabel", "delete", "restore", "purge")


class StaleDecision(LoupeError):
    """The decision no longer fits the image; the message says what changed."""


class DecisionError(LoupeError, ValueError):
    """A decision that makes no sense as asked (unknown action, no label for a relabel…)."""


@dataclass(frozen=True)
class DecisionRow:
    """One entry of the decision log."""

    id: int
    image_id: int
    user_name: str | None
    action: str
    old_label: str | None
    new_label: str | None
    model_version: str | None
    score: float | None
    undoes_id: int | None
    created_at: datetime


def _last_decision_id(session: Session, image_id: int) -> int | None:
    return session.scalar(select(Decision.id).where(Decision.image_id == image_id).order_by(Decision.id.desc()))


def last_decision_id(database: Database, image_id: int) -> int | None:
    """The newest decision on an image (what a client shows, and sends back as expected_last_id)."""
    with database.read() as session:
        return _last_decision_id(session, image_id)


def _label_name(session: Session, image: Image) -> str | None:
    return session.get(Label, image.label_id).name if image.label_id else None


def _check_fresh(session: Session, image: Image | None, image_id: int, expected_last_id: int | None) -> Image:
    if image is None:
        raise StaleDecision(f"image {image_id} no longer exists")
    current = _last_decision_id(session, image_id)
    if current != expected_last_id:
        who = session.scalar(
            select(User.name).join(Decision, Decision.user_id == User.id).where(Decision.id == current)
        )
        raise StaleDecision(f"image {image_id} was decided by {who or 'someone else'} meanwhile; reload it")
    return image


def decide(
    database: Database,
    image_id: int,
    user_id: int | None,
    action: str,
    *,
    expected_last_id: int | None,
    new_label: str | None = None,
    model_version: str | None = None,
    score: float | None = None,
) -> DecisionRow:
    """Record keep / relabel / delete / restore and apply it to the image, in one transaction."""
    if action not in ACTIONS:
        raise DecisionError(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    if action == "relabel" and not new_label:
        raise DecisionError("a relabel needs the new label")
    with database.write() as session:
        # The row lock makes concurrent decisions on one image take turns on PostgreSQL
        # (SQLite's BEGIN IMMEDIATE already serialises writers).
        locked = session.get(Image, image_id, with_for_update=True)
        image = _check_fresh(session, locked, image_id, expected_last_id)
        old_label = _label_name(session, image)
        if action == "relabel":
            image.label_id = get_or_create_label(session, new_label).id
        elif action == "delete":
            image.status = "deleted"
        elif action == "restore":
            if image.status != "deleted":
                raise DecisionError(f"image {image_id} is {image.status}; only deleted images can be restored")
            image.status = "active"
        elif action == "purge":
            if image.status != "deleted":
                raise DecisionError(f"image {image_id} is {image.status}; only deleted images can be purged")
            image.status = "purged"  # the row stays for the log; the files go (labeling.purge)
        row = Decision(
            image_id=image_id,
            user_id=user_id,
            action=action,
            old_label=old_label,
            new_label=new_label if action == "relabel" else old_label,
            model_version=model_version,
            score=score,
        )
        session.add(row)
        session.flush()
        return _row(session, row)


def decide_on_current(database: Database, image_id: int, user_id: int | None, action: str, **details) -> DecisionRow:
    """decide() on the image as it is now: for admin actions and duplicate calls that show no single view."""
    return decide(database, image_id, user_id, action, expected_last_id=last_decision_id(database, image_id), **details)


def undo_last(database: Database, user_id: int) -> DecisionRow:
    """Append the decision that reverses this user's newest decision not yet undone."""
    with database.write() as session:
        undone = select(Decision.undoes_id).where(Decision.undoes_id.is_not(None))
        target = session.scalar(
            select(Decision)
            .where(Decision.user_id == user_id, Decision.action.not_in(("undo", "purge")), Decision.id.not_in(undone))
            .order_by(Decision.id.desc())
            .limit(1)
        )
        if target is None:
            raise DecisionError("there is nothing of yours to undo")
        locked = session.get(Image, target.image_id, with_for_update=True)
        image = _check_fresh(session, locked, target.image_id, target.id)
        current_label = _label_name(session, image)
        if target.action == "relabel":
            image.label_id = get_or_create_label(session, target.old_label).id if target.old_label else None
        elif target.action == "delete":
            image.status = "active"
        elif target.action == "restore":
            image.status = "deleted"
        row = Decision(
            image_id=target.image_id,
            user_id=user_id,
            action="undo",
            old_label=current_label,
            new_label=target.old_label,
            model_version=target.model_version,
            score=target.score,
            undoes_id=target.id,
        )
        session.add(row)
        session.flush()
        return _row(session, row)


def _row(session: Session, decision: Decision) -> DecisionRow:
    user_name = session.scalar(select(User.name).where(User.id == decision.user_id)) if decision.user_id else None
    return DecisionRow(
        decision.id,
        decision.image_id,
        user_name,
        decision.action,
        decision.old_label,
        decision.new_label,
        decision.model_version,
        decision.score,
        decision.undoes_id,
        decision.created_at,
    )


def list_decisions(database: Database, image_id: int | None = None) -> list[DecisionRow]:
    """The decision log in the order it was written, of one image or of all."""
    query = select(Decision).order_by(Decision.id)
    if image_id is not None:
        query = query.where(Decision.image_id == image_id)
    with database.read() as session:
        return [_row(session, d) for d in session.scalars(query)]


@dataclass(frozen=True)
class DeletedImage:
    """A soft-deleted image, for the Admin tab's restore and purge."""

    image_id: int
    original_name: str
    label: str | None
    stored_path: str
    thumb_path: str


def deleted_images(database: Database, limit: int = 500) -> list[DeletedImage]:
    """Images deleted (not purged), newest first."""
    with database.read() as session:
        rows = session.execute(
            select(Image, Label.name)
            .outerjoin(Label, Image.label_id == Label.id)
            .where(Image.status == "deleted")
            .order_by(Image.id.desc())
            .limit(limit)
        ).all()
    return [DeletedImage(i.id, i.original_name, name, i.stored_path, i.thumb_path) for i, name in rows]
