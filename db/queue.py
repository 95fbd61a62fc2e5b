"""The review queue's SQL: scored active images, most likely wrong first, unreviewed first, with leases.

Which actions take an image out of the queue, and how long a lease lasts, are labeling/review.py's
rules; it passes them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, delete, exists, func, or_, select
from sqlalchemy.exc import IntegrityError

from db.engine import Database
from db.schema import BlindTask, Decision, Image, Label, Lease, Score, utcnow


@dataclass(frozen=True)
class QueueFilters:
    """Which part of the queue to look at; None means any."""

    label: str | None = None  # the current label
    predicted: str | None = None
    split: str | None = None
    reviewed: bool | None = None
    unlabeled: bool = False  # the active-learning queue of images without a label
    image_ids: tuple[int, ...] | None = None  # only these images (a selection made on the map); () matches none


@dataclass(frozen=True)
class QueueItem:
    """One image in the queue with what the expert needs to decide it."""

    image_id: int
    original_name: str
    source: str
    stored_path: str
    label: str | None
    predicted_label: str | None  # None on a blind task: the expert sees no prediction
    score: float | None
    top: list
    split: str
    reviewed: bool
    last_decision_id: int | None
    task_id: int | None = None  # a blind task (an audit item or a second opinion); answer it with this id
    task_kind: str | None = None  # audit | second


@dataclass
class QueuePage:
    """A page of the queue and how many items the filter holds, reviewed or not."""

    items: list[QueueItem] = field(default_factory=list)
    total: int = 0
    unreviewed: int = 0


def reviewed_clause(reviewing: Sequence[str]):
    """An image counts as reviewed when it has a decision of a reviewing action that was not undone."""
    undone = select(Decision.undoes_id).where(Decision.undoes_id.is_not(None))
    return exists().where(Decision.image_id == Image.id, Decision.action.in_(reviewing), Decision.id.not_in(undone))


def _base_query(scorer: str, filters: QueueFilters, reviewing: Sequence[str]):
    reviewed = reviewed_clause(reviewing)
    last_decision = select(func.max(Decision.id)).where(Decision.image_id == Image.id).scalar_subquery()
    query = (
        select(Image, Label.name, Score, reviewed.label("reviewed"), last_decision.label("last_decision_id"))
        .join(Score, and_(Score.image_id == Image.id, Score.scorer == scorer))
        .outerjoin(Label, Image.label_id == Label.id)
        .where(Image.status == "active")
    )
    query = query.where(Image.label_id.is_(None) if filters.unlabeled else Image.label_id.is_not(None))
    # An image drawn for an audit waits for its blind answer: every ranked view (Review, the Grid, the REST
    # queue) would show its prediction and let it be decided unblind, so none lists it until it is answered.
    awaits_audit = exists().where(BlindTask.image_id == Image.id, BlindTask.kind == "audit", BlindTask.status == "open")
    query = query.where(~awaits_audit)
    if filters.label is not None:
        query = query.where(Label.name == filters.label)
    if filters.predicted is not None:
        query = query.where(Score.predicted_label == filters.predicted)
    if filters.split is not None:
        query = query.where(Image.split == filters.split)
    if filters.reviewed is not None:
        query = query.where(reviewed if filters.reviewed else ~reviewed)
    if filters.image_ids is not None:
        query = query.where(Image.id.in_(filters.image_ids))
    return query, reviewed


def _item(image, label, score, reviewed, last_decision_id) -> QueueItem:
    return QueueItem(
        image_id=image.id,
        original_name=image.original_name,
        source=image.source,
        stored_path=image.stored_path,
        label=label,
        predicted_label=score.predicted_label,
        score=score.score,
        top=list(score.top or []),
        split=image.split,
        reviewed=bool(reviewed),
        last_decision_id=last_decision_id,
    )


def queue_page(
    database: Database,
    scorer: str,
    filters: QueueFilters,
    limit: int = 50,
    offset: int = 0,
    *,
    reviewing: Sequence[str],
) -> QueuePage:
    """Items in review order (unreviewed first, then highest score), with the filter's counts."""
    query, reviewed = _base_query(scorer, filters, reviewing)
    ordered = query.order_by(reviewed.asc(), Score.score.desc(), Image.id).limit(limit).offset(offset)
    counted = query.with_only_columns(func.count(), reviewed.label("r")).group_by(reviewed)
    with database.read() as session:
        items = [_item(*row) for row in session.execute(ordered).all()]
        counts = {bool(r): n for n, r in session.execute(counted.order_by(None)).all()}
    return QueuePage(items, sum(counts.values()), counts.get(False, 0))


def lease_next(
    database: Database,
    scorer: str,
    user_id: int,
    filters: QueueFilters,
    *,
    reviewing: Sequence[str],
    lease_s: int,
    skip: tuple[int, ...] = (),
) -> QueueItem | None:
    """The first unreviewed item nobody else holds (and not in skip), leased to user_id; None when none is left."""
    filters = QueueFilters(**{**filters.__dict__, "reviewed": False})
    for _ in range(20):  # a concurrent expert may take the same item first: then try the next
        now = utcnow()
        query, reviewed = _base_query(scorer, filters, reviewing)
        held_by_others = exists().where(Lease.image_id == Image.id, Lease.user_id != user_id, Lease.expires_at > now)
        query = query.where(~held_by_others, Image.id.not_in(skip)).order_by(Score.score.desc(), Image.id).limit(1)
        # PostgreSQL: experts asking at once each lock a different row instead of all picking the top
        # one and all but one failing on the lease's key (SQLite's BEGIN IMMEDIATE serialises them).
        query = query.with_for_update(of=Image, skip_locked=True)
        try:
            with database.write() as session:
                row = session.execute(query).first()
                if row is None:
                    return None
                image_id = row[0].id
                session.execute(
                    delete(Lease).where(
                        Lease.image_id == image_id, or_(Lease.user_id == user_id, Lease.expires_at <= now)
                    )
                )
                session.execute(delete(Lease).where(Lease.user_id == user_id))  # one item at a time each
                session.add(Lease(image_id=image_id, user_id=user_id, expires_at=now + timedelta(seconds=lease_s)))
                session.flush()
                # On PostgreSQL the SELECT above saw the queue as it was when it started: another expert
                # may have leased, decided and released this image since. A fresh statement sees that.
                still_open = select(Image.id).where(Image.id == image_id, Image.status == "active", ~reviewed)
                if session.execute(still_open).first() is None:
                    raise _TakenMeanwhile
                return _item(*row)
        except (IntegrityError, _TakenMeanwhile):
            continue
    return None


class _TakenMeanwhile(Exception):
    """The chosen item was decided while this lease was being taken; the transaction rolls back."""


def release_leases(database: Database, user_id: int) -> None:
    """Give back whatever the user holds (after a decision, a skip or a logout)."""
    with database.write() as session:
        session.execute(delete(Lease).where(Lease.user_id == user_id))


def labeled_image_ids(database: Database, label: str) -> list[int]:
    """The active images whose current label is label."""
    with database.read() as session:
        return list(
            session.scalars(
                select(Image.id)
                .join(Label, Image.label_id == Label.id)
                .where(Label.name == label, Image.status == "active")
            )
        )
