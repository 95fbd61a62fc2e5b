"""Expert decisions: an append-only log, and the image's current label and status that follow from it.

Every function here is one short transaction, committed before it returns: nothing an expert
decided waits in memory. A decision made on a stale view (someone else decided the image since the
expert saw it, or it is gone) is refused with StaleDecision and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, insert, select, update
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


@dataclass
class _Locked:
    """An image row locked for a decision, with what the decision needs to know, read in one query."""

    status: str
    label_id: int | None
    label_name: str | None
    last_decision_id: int | None
    user_name: str | None


# A decision is the hottest write path (bench/queue_scale.py): one read and two Core writes, no ORM
# unit of work, and statements built once (building them took a fifth of a decision's time). The row
# lock makes concurrent decisions on one image take turns on PostgreSQL (SQLite's BEGIN IMMEDIATE
# already serialises writers).
_LOCK_IMAGE = (
    select(
        Image.status,
        Image.label_id,
        Label.name,
        select(func.max(Decision.id)).where(Decision.image_id == Image.id).scalar_subquery(),
        select(User.name).where(User.id == bindparam("user_id")).scalar_subquery(),
    )
    .outerjoin(Label, Image.label_id == Label.id)
    .where(Image.id == bindparam("image_id"))
    .with_for_update(of=Image)
)
_APPEND_DECISION = insert(Decision).returning(Decision.id, Decision.created_at)


def _lock(session: Session, image_id: int, user_id: int | None) -> _Locked | None:
    row = session.execute(_LOCK_IMAGE, {"image_id": image_id, "user_id": user_id}).first()
    return _Locked(*row) if row else None


def _check_fresh(session: Session, locked: _Locked | None, image_id: int, expected_last_id: int | None) -> _Locked:
    if locked is None:
        raise StaleDecision(f"image {image_id} no longer exists")
    if locked.last_decision_id != expected_last_id:
        who = session.scalar(
            select(User.name).join(Decision, Decision.user_id == User.id).where(Decision.id == locked.last_decision_id)
        )
        raise StaleDecision(f"image {image_id} was decided by {who or 'someone else'} meanwhile; reload it")
    return locked


def _record(session: Session, image_id: int, image_changes: dict, user_name: str | None, **decision) -> DecisionRow:
    """Apply the changes to the image and append the decision; returns the decision as written."""
    if image_changes:
        session.execute(update(Image).where(Image.id == image_id).values(**image_changes))
    values = {"image_id": image_id, "undoes_id": None, **decision}
    decision_id, created_at = session.execute(_APPEND_DECISION, values).one()
    return DecisionRow(
        id=decision_id,
        image_id=image_id,
        user_name=user_name,
        action=values["action"],
        old_label=values["old_label"],
        new_label=values["new_label"],
        model_version=values["model_version"],
        score=values["score"],
        undoes_id=values["undoes_id"],
        created_at=created_at,
    )


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
    """Record keep / relabel / delete / restore / purge and apply it to the image, in one transaction."""
    if action not in ACTIONS:
        raise DecisionError(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    if action == "relabel" and not new_label:
        raise DecisionError("a relabel needs the new label")
    with database.write() as session:
        image = _check_fresh(session, _lock(session, image_id, user_id), image_id, expected_last_id)
        if action in ("keep", "relabel", "delete") and image.status != "active":
            raise StaleDecision(f"image {image_id} is {image.status} now; restore it before deciding on it")
        if action in ("restore", "purge") and image.status != "deleted":
            raise DecisionError(f"image {image_id} is {image.status}; only deleted images can be {action}d")
        changes = {
            "keep": {},
            "relabel": {"label_id": get_or_create_label(session, new_label).id} if action == "relabel" else {},
            "delete": {"status": "deleted"},
            "restore": {"status": "active"},
            "purge": {"status": "purged"},  # the row stays for the log; the files go (labeling.purge)
        }[action]
        return _record(
            session, image_id, changes, image.user_name,
            user_id=user_id, action=action, old_label=image.label_name,
            new_label=new_label if action == "relabel" else image.label_name,
            model_version=model_version, score=score,
        )  # fmt: skip


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
        image = _check_fresh(session, _lock(session, target.image_id, user_id), target.image_id, target.id)
        changes = {}
        if target.action == "relabel":
            changes["label_id"] = get_or_create_label(session, target.old_label).id if target.old_label else None
        elif target.action == "delete":
            changes["status"] = "active"
        elif target.action == "restore":
            changes["status"] = "deleted"
        return _record(
            session, target.image_id, changes, image.user_name,
            user_id=user_id, action="undo", old_label=image.label_name, new_label=target.old_label,
            model_version=target.model_version, score=target.score, undoes_id=target.id,
        )  # fmt: skip


def _row(decision: Decision, user_name: str | None) -> DecisionRow:
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
        names = dict(session.execute(select(User.id, User.name)).all())
        return [_row(d, names.get(d.user_id)) for d in session.scalars(query)]


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


@dataclass(frozen=True)
class Newest:
    """The newest row of a kind: its id and when it was written."""

    id: int
    at: datetime


def newest_decision(database: Database) -> Newest | None:
    """The last decision anyone made (the quick loop waits until it is a little while ago)."""
    with database.read() as session:
        row = session.execute(select(Decision.id, Decision.created_at).order_by(Decision.id.desc()).limit(1)).first()
        return Newest(*row) if row else None


def count_decisions_since(database: Database, decision_id: int | None) -> int:
    """How many decisions came after decision_id (all of them for None)."""
    query = select(func.count()).select_from(Decision)
    if decision_id is not None:
        query = query.where(Decision.id > decision_id)
    with database.read() as session:
        return session.scalar(query) or 0


@dataclass(frozen=True)
class ReviewerActivity:
    """One expert's decisions by action, and when they last decided."""

    user_name: str
    decisions: int
    by_action: dict[str, int]
    last_at: datetime | None


def reviewer_activity(database: Database) -> list[ReviewerActivity]:
    """Per user: decisions made, by action, most active first."""
    with database.read() as session:
        rows = session.execute(
            select(User.name, Decision.action, func.count(), func.max(Decision.created_at))
            .join(User, Decision.user_id == User.id)
            .group_by(User.name, Decision.action)
        ).all()
    people: dict[str, ReviewerActivity] = {}
    for name, action, count, last_at in rows:
        known = people.get(name) or ReviewerActivity(name, 0, {}, None)
        latest = max(filter(None, [known.last_at, last_at]), default=None)
        people[name] = ReviewerActivity(name, known.decisions + count, {**known.by_action, action: count}, latest)
    return sorted(people.values(), key=lambda person: -person.decisions)
