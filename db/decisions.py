"""Expert decisions: the append-only log, and the image's current label and status written with each.

Policy lives in labeling/review.py: which actions exist, what each does to an image, who may take it,
when a view is stale. This module only locks the image, hands what it found to the service's plan,
and writes the outcome the plan returns, in one short transaction committed before it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from db.engine import Database
from db.labels import get_or_create_label
from db.schema import Decision, Image, Label, Lease, ModelVersion, Score, User


@dataclass(frozen=True)
class DecisionRow:
    """One entry of the decision log."""

    id: int
    image_id: int
    user_name: str | None
    action: str
    old_label: str | None
    new_label: str | None
    model_version: str | None  # the promoted version serving when the decision was made
    scorer: str | None  # the scoring pass that ranked the image
    score: float | None
    undoes_id: int | None
    created_at: datetime
    purpose: str | None = None  # "audit" or "settle"; None for the ranked queue and everything else


def _last_decision_id(session: Session, image_id: int) -> int | None:
    return session.scalar(select(Decision.id).where(Decision.image_id == image_id).order_by(Decision.id.desc()))


def last_decision_id(database: Database, image_id: int) -> int | None:
    """The newest decision on an image (what a client shows, and sends back as expected_last_id)."""
    with database.read() as session:
        return _last_decision_id(session, image_id)


@dataclass(frozen=True)
class LockedImage:
    """An image row locked for a decision, with everything a plan needs, read in one query."""

    image_id: int
    status: str
    label: str | None
    last_decision_id: int | None
    promoted_version: str | None  # the version serving now
    score: float | None  # the image's score in the scoring pass asked about
    decider: str | None  # the name of the user deciding now
    session: Session

    def last_decided_by(self) -> str | None:
        """Who made the image's newest decision (for a stale refusal's message)."""
        return self.session.scalar(
            select(User.name).join(Decision, Decision.user_id == User.id).where(Decision.id == self.last_decision_id)
        )


@dataclass(frozen=True)
class Outcome:
    """What a decision does: the image's status and label after it, and what the log records with it."""

    action: str
    status: str
    label: str | None
    model_version: str | None = None
    scorer: str | None = None
    score: float | None = None
    undoes_id: int | None = None
    purpose: str | None = None


# A plan sees the locked image (None when it does not exist) and returns the outcome, or raises a refusal.
Plan = Callable[[LockedImage | None], Outcome]

# A decision is the hottest write path (bench/queue_scale.py): one read and two Core writes, no ORM
# unit of work, and statements built once (building them took a fifth of a decision's time). The row
# lock makes concurrent decisions on one image take turns on PostgreSQL (SQLite's BEGIN IMMEDIATE
# already serialises writers).
_LOCK_IMAGE = (
    select(
        Image.id,
        Image.status,
        Label.name,
        select(func.max(Decision.id)).where(Decision.image_id == Image.id).scalar_subquery(),
        select(ModelVersion.version).where(ModelVersion.status == "promoted").limit(1).scalar_subquery(),
        select(Score.score).where(Score.image_id == Image.id, Score.scorer == bindparam("scorer")).scalar_subquery(),
        select(User.name).where(User.id == bindparam("user_id")).scalar_subquery(),
    )
    .outerjoin(Label, Image.label_id == Label.id)
    .where(Image.id == bindparam("image_id"))
    .with_for_update(of=Image)
)
_APPEND_DECISION = insert(Decision).returning(Decision.id, Decision.created_at)
_END_LEASES = delete(Lease).where(Lease.user_id == bindparam("user_id"))


def _lock(session: Session, image_id: int, user_id: int | None, scorer: str | None) -> LockedImage | None:
    row = session.execute(_LOCK_IMAGE, {"image_id": image_id, "user_id": user_id, "scorer": scorer}).first()
    return LockedImage(*row, session=session) if row else None


def _write(session: Session, image: LockedImage, user_id: int | None, outcome: Outcome) -> DecisionRow:
    """Apply the outcome to the image and append the decision; returns the decision as written."""
    changes = {}
    if outcome.status != image.status:
        changes["status"] = outcome.status
    if outcome.label != image.label:
        changes["label_id"] = get_or_create_label(session, outcome.label).id if outcome.label is not None else None
    if changes:
        session.execute(update(Image).where(Image.id == image.image_id).values(**changes))
    values = {
        "image_id": image.image_id,
        "user_id": user_id,
        "action": outcome.action,
        "old_label": image.label,
        "new_label": outcome.label,
        "model_version": outcome.model_version,
        "scorer": outcome.scorer,
        "score": outcome.score,
        "undoes_id": outcome.undoes_id,
        "purpose": outcome.purpose,
    }
    decision_id, created_at = session.execute(_APPEND_DECISION, values).one()
    return DecisionRow(
        decision_id, image.image_id, image.decider, outcome.action, image.label, outcome.label,
        outcome.model_version, outcome.scorer, outcome.score, outcome.undoes_id, created_at, outcome.purpose,
    )  # fmt: skip


def record_decision(
    database: Database,
    image_id: int,
    user_id: int | None,
    plan: Plan,
    *,
    scorer: str | None = None,
    end_leases: bool = False,
) -> DecisionRow:
    """Lock the image, let plan decide the outcome (or refuse), write it, and (end_leases) drop the
    user's leases; one transaction."""
    with database.write() as session:
        image = _lock(session, image_id, user_id, scorer)
        outcome = plan(image)
        row = _write(session, image, user_id, outcome)
        if end_leases and user_id is not None:
            session.execute(_END_LEASES, {"user_id": user_id})
        return row


def record_undo(
    database: Database,
    user_id: int,
    undoable: Sequence[str],
    plan: Callable[[DecisionRow | None, LockedImage | None], Outcome],
    *,
    end_leases: bool = False,
) -> DecisionRow:
    """Append the decision that reverses user_id's newest undoable decision not yet undone.

    plan sees that decision (None when there is none) and its image locked, and returns the reverse.
    """
    with database.write() as session:
        undone = select(Decision.undoes_id).where(Decision.undoes_id.is_not(None))
        target = session.scalar(
            select(Decision)
            .where(Decision.user_id == user_id, Decision.action.in_(undoable), Decision.id.not_in(undone))
            .order_by(Decision.id.desc())
            .limit(1)
        )
        target_row = _row(target, None) if target is not None else None
        image = _lock(session, target.image_id, user_id, target.scorer) if target is not None else None
        outcome = plan(target_row, image)
        row = _write(session, image, user_id, outcome)
        if end_leases:
            session.execute(_END_LEASES, {"user_id": user_id})
        return row


def _row(decision: Decision, user_name: str | None) -> DecisionRow:
    return DecisionRow(
        decision.id,
        decision.image_id,
        user_name,
        decision.action,
        decision.old_label,
        decision.new_label,
        decision.model_version,
        decision.scorer,
        decision.score,
        decision.undoes_id,
        decision.created_at,
        decision.purpose,
    )


def get_decision(database: Database, decision_id: int) -> DecisionRow | None:
    """One decision of the log, or None."""
    with database.read() as session:
        decision = session.get(Decision, decision_id)
        if decision is None:
            return None
        return _row(decision, session.scalar(select(User.name).where(User.id == decision.user_id)))


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


def ranked_actions(database: Database, actions: Sequence[str], *, leave_out_scorers: Sequence[str] = ()) -> list[str]:
    """The actions of the decisions made from the ranked queue (no purpose; of actions, not undone, by a
    person, on a labeled image, not from the scorers left out), oldest first. Labeling an unlabeled image
    is not finding a wrong label, so those are left out."""
    undone = select(Decision.undoes_id).where(Decision.undoes_id.is_not(None))
    query = (
        select(Decision.action)
        .where(
            Decision.purpose.is_(None),
            Decision.action.in_(list(actions)),
            Decision.user_id.is_not(None),
            Decision.id.not_in(undone),
            Decision.old_label.is_not(None),
            or_(Decision.scorer.is_(None), Decision.scorer.not_in(list(leave_out_scorers) or [""])),
        )
        .order_by(Decision.id)
    )
    with database.read() as session:
        return list(session.scalars(query))


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
