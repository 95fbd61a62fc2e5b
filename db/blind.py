"""Blind checks' SQL: audits (their population and bands), blind tasks and their answers.

The rules (who may answer what, when a second opinion is asked, how a dispute is settled) are
labeling/review.py's; the arithmetic of the estimates is labeling/estimates.py's. This module reads and
writes rows in short transactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from db.engine import Database
from db.queue import reviewed_clause
from db.schema import (
    Audit,
    AuditMember,
    BlindAnswer,
    BlindTask,
    Decision,
    Image,
    Label,
    Lease,
    Score,
    User,
    utcnow,
)

AUDIT, SECOND = "audit", "second"
OPEN, ANSWERED, AGREED, DISPUTED, SETTLED, WITHDRAWN = "open", "answered", "agreed", "disputed", "settled", "withdrawn"


@dataclass(frozen=True)
class TaskRow:
    """A blind task as stored."""

    id: int
    kind: str
    image_id: int
    audit_id: int | None
    shown_label: str | None
    first_decision_id: int | None
    excluded_user_id: int | None
    status: str
    settled_decision_id: int | None
    created_at: datetime


def _task(task: BlindTask) -> TaskRow:
    return TaskRow(
        task.id, task.kind, task.image_id, task.audit_id, task.shown_label, task.first_decision_id,
        task.excluded_user_id, task.status, task.settled_decision_id, task.created_at,
    )  # fmt: skip


@dataclass(frozen=True)
class AuditRow:
    """An audit: when, how many drawn, the pass whose scores made its bands, and the bands."""

    id: int
    created_at: datetime
    size: int
    scorer: str
    bands: list


def unreviewed_scored(database: Database, scorer: str, *, reviewing: Sequence[str]) -> list[tuple[int, float, str]]:
    """(image id, score, label) of every active labeled image the pass scored that nobody reviewed and
    no open blind task holds: the population an audit draws from."""
    pending = exists().where(BlindTask.image_id == Image.id, BlindTask.status == OPEN)
    query = (
        select(Image.id, Score.score, Label.name)
        .join(Score, and_(Score.image_id == Image.id, Score.scorer == scorer))
        .join(Label, Image.label_id == Label.id)
        .where(Image.status == "active", ~reviewed_clause(reviewing), ~pending)
        .order_by(Image.id)
    )
    with database.read() as session:
        return [(i, float(s), name) for i, s, name in session.execute(query).all()]


def create_audit(
    database: Database,
    user_id: int | None,
    scorer: str,
    bands: list[dict],
    members: Sequence[tuple[int, int, bool, str | None]],
) -> int:
    """Store an audit, its population (image id, band, drawn?, label) and a blind task per drawn image; its id."""
    with database.write() as session:
        audit = Audit(created_by=user_id, size=sum(1 for m in members if m[2]), scorer=scorer, bands=bands)
        session.add(audit)
        session.flush()
        session.execute(
            insert(AuditMember),
            [{"audit_id": audit.id, "image_id": i, "band": b, "sampled": s, "label": lab} for i, b, s, lab in members],
        )
        drawn = [{"kind": AUDIT, "image_id": i, "audit_id": audit.id, "shown_label": lab, "status": OPEN,
                  "created_at": utcnow()} for i, _, s, lab in members if s]  # fmt: skip
        if drawn:
            session.execute(insert(BlindTask), drawn)
        return audit.id


def latest_audit(database: Database) -> AuditRow | None:
    """The newest audit, or None."""
    with database.read() as session:
        audit = session.scalar(select(Audit).order_by(Audit.id.desc()).limit(1))
        return AuditRow(audit.id, audit.created_at, audit.size, audit.scorer, list(audit.bands)) if audit else None


def unreviewed_by_band(database: Database, audit_id: int, *, reviewing: Sequence[str]) -> dict[int, int]:
    """Per band, how many of the audit's population that were not drawn are still active and unreviewed."""
    query = (
        select(AuditMember.band, func.count())
        .join(Image, Image.id == AuditMember.image_id)
        .where(
            AuditMember.audit_id == audit_id,
            AuditMember.sampled.is_(False),
            Image.status == "active",
            ~reviewed_clause(reviewing),
        )
        .group_by(AuditMember.band)
    )
    with database.read() as session:
        return {band: n for band, n in session.execute(query).all()}


def add_task(
    database: Database,
    kind: str,
    image_id: int,
    shown_label: str | None,
    *,
    first_decision_id: int | None = None,
    excluded_user_id: int | None = None,
    audit_id: int | None = None,
) -> int:
    """A new open blind task; its id."""
    with database.write() as session:
        task = BlindTask(
            kind=kind,
            image_id=image_id,
            shown_label=shown_label,
            first_decision_id=first_decision_id,
            excluded_user_id=excluded_user_id,
            audit_id=audit_id,
            status=OPEN,
        )
        session.add(task)
        session.flush()
        return task.id


def get_task(database: Database, task_id: int) -> TaskRow | None:
    """One blind task, or None."""
    with database.read() as session:
        task = session.get(BlindTask, task_id)
        return _task(task) if task else None


def last_was_blind(database: Database, user_id: int) -> bool:
    """Whether the user's newest answer was to a blind task rather than a decision from the ranked queue."""
    with database.read() as session:
        answered = session.scalar(select(func.max(BlindAnswer.created_at)).where(BlindAnswer.user_id == user_id))
        decided = session.scalar(
            select(func.max(Decision.created_at)).where(Decision.user_id == user_id, Decision.purpose.is_(None))
        )
    return answered is not None and (decided is None or answered >= decided)


def _answerable_by(user_id: int) -> tuple:
    """The conditions on a blind task that this user may answer now: open, not a check of their own
    decision, and not answered by them already."""
    answered = exists().where(BlindAnswer.task_id == BlindTask.id, BlindAnswer.user_id == user_id)
    not_theirs = or_(BlindTask.excluded_user_id.is_(None), BlindTask.excluded_user_id != user_id)
    return BlindTask.status == OPEN, not_theirs, ~answered


def lease_next_task(
    database: Database, user_id: int, *, lease_s: int, skip: tuple[int, ...] = ()
) -> tuple[TaskRow, Image, str | None, int | None] | None:
    """The oldest open blind task this user may answer (not theirs to check, not answered by them, its
    image active and held by nobody else), with its image leased to the user, the image's label now and its
    last decision's id; None when there is none."""
    for _ in range(20):  # another expert may lease the same image first: then try the next
        now = utcnow()
        held_by_others = exists().where(Lease.image_id == Image.id, Lease.user_id != user_id, Lease.expires_at > now)
        query = (
            select(BlindTask, Image, Label.name)
            .join(Image, Image.id == BlindTask.image_id)
            .outerjoin(Label, Label.id == Image.label_id)
            .where(
                *_answerable_by(user_id),
                Image.status == "active",
                ~held_by_others,
                Image.id.not_in(skip),
            )
            .order_by(BlindTask.id)
            .limit(1)
            .with_for_update(of=BlindTask, skip_locked=True)
        )
        try:
            with database.write() as session:
                row = session.execute(query).first()
                if row is None:
                    return None
                task, image, label = row
                session.execute(
                    delete(Lease).where(
                        or_(Lease.user_id == user_id, and_(Lease.image_id == image.id, Lease.expires_at <= now))
                    )
                )
                session.add(Lease(image_id=image.id, user_id=user_id, expires_at=now + timedelta(seconds=lease_s)))
                session.flush()
                last = session.scalar(select(func.max(Decision.id)).where(Decision.image_id == image.id))
                session.expunge(image)
                return _task(task), image, label, last
        except IntegrityError:
            continue
    return None


def waits_for(database: Database, user_id: int, image_id: int) -> bool:
    """Whether an open blind task on the image waits for this user's answer (theirs to give, not yet given)."""
    query = select(BlindTask.id).where(BlindTask.image_id == image_id, *_answerable_by(user_id))
    with database.read() as session:
        return session.execute(query.limit(1)).first() is not None


def claim_task(database: Database, task_id: int, from_status: str, to_status: str) -> bool:
    """Move the task from one status to another if it is still in the first; whether it moved (once only)."""
    with database.write() as session:
        moved = session.execute(
            update(BlindTask).where(BlindTask.id == task_id, BlindTask.status == from_status).values(status=to_status)
        )
        return moved.rowcount == 1


def record_answer(
    database: Database,
    task_id: int,
    user_id: int,
    action: str,
    label: str | None,
    *,
    decision_id: int | None = None,
    settled_decision_id: int | None = None,
) -> None:
    """Store a user's answer to a task (and the decision that settled it, when given); the user's leases end."""
    with database.write() as session:
        session.add(BlindAnswer(task_id=task_id, user_id=user_id, action=action, label=label, decision_id=decision_id))
        if settled_decision_id is not None:
            session.execute(
                update(BlindTask).where(BlindTask.id == task_id).values(settled_decision_id=settled_decision_id)
            )
        session.execute(delete(Lease).where(Lease.user_id == user_id))


def withdraw_checks_of(database: Database, decision_id: int) -> int:
    """Withdraw the open second opinions on a decision (it was undone); how many."""
    with database.write() as session:
        return session.execute(
            update(BlindTask)
            .where(BlindTask.first_decision_id == decision_id, BlindTask.status == OPEN)
            .values(status=WITHDRAWN)
        ).rowcount


@dataclass(frozen=True)
class Answer:
    """One person's answer on a blind task, or the decision a second opinion checks."""

    user_name: str | None
    action: str
    label: str | None  # the label they say the image shows; None: delete it
    created_at: datetime
    decision_id: int | None = None


@dataclass(frozen=True)
class Judgement:
    """A second opinion with the decision it checks: two experts' answers on one image."""

    task_id: int
    image_id: int
    audit_id: int | None
    shown_label: str | None
    status: str
    first: Answer
    second: Answer | None  # None while nobody gave it
    settled: Answer | None  # the admin's answer, once settled


def decision_answer(action: str, old_label: str | None, new_label: str | None) -> str | None:
    """The label a decision says the image shows: its label for a keep, the new one for a relabel, None for a delete."""
    if action == "delete":
        return None
    return new_label if action == "relabel" else old_label


def judgements(
    database: Database, *, statuses: Sequence[str] | None = None, image_id: int | None = None
) -> list[Judgement]:
    """Second opinions with the decisions they check (of the given statuses, or of one image), oldest first."""
    first_user = aliased(User)
    query = (
        select(BlindTask, Decision, first_user.name)
        .join(Decision, Decision.id == BlindTask.first_decision_id)
        .outerjoin(first_user, first_user.id == Decision.user_id)
        .where(BlindTask.kind == SECOND)
        .order_by(BlindTask.id)
    )
    if statuses is not None:
        query = query.where(BlindTask.status.in_(list(statuses)))
    if image_id is not None:
        query = query.where(BlindTask.image_id == image_id)
    with database.read() as session:
        rows = session.execute(query).all()
        task_ids = [task.id for task, _, _ in rows]
        answers: dict[int, list[tuple[BlindAnswer, str]]] = {}
        if task_ids:
            for answer, name in session.execute(
                select(BlindAnswer, User.name)
                .join(User, User.id == BlindAnswer.user_id)
                .where(BlindAnswer.task_id.in_(task_ids))
                .order_by(BlindAnswer.id)
            ).all():
                answers.setdefault(answer.task_id, []).append((answer, name))
    found = []
    for task, decision, first_name in rows:
        first = Answer(
            first_name,
            decision.action,
            decision_answer(decision.action, decision.old_label, decision.new_label),
            decision.created_at,
            decision.id,
        )
        given = [Answer(name, a.action, a.label, a.created_at, a.decision_id) for a, name in answers.get(task.id, [])]
        second = given[0] if given else None
        settled = given[1] if task.status == SETTLED and len(given) > 1 else None  # the admin answers last
        found.append(
            Judgement(task.id, task.image_id, task.audit_id, task.shown_label, task.status, first, second, settled)
        )
    return found


@dataclass(frozen=True)
class AuditItem:
    """An audit's drawn image: its band, its label when drawn, and the audit answer (None while unanswered)."""

    task_id: int
    image_id: int
    band: int
    label: str | None
    status: str
    answer: Answer | None


def audit_items(database: Database, audit_id: int) -> list[AuditItem]:
    """The audit's drawn images, in task order, with the first answer each got."""
    query = (
        select(BlindTask, AuditMember.band, AuditMember.label, BlindAnswer, User.name)
        .join(AuditMember, and_(AuditMember.audit_id == BlindTask.audit_id, AuditMember.image_id == BlindTask.image_id))
        .outerjoin(BlindAnswer, BlindAnswer.task_id == BlindTask.id)
        .outerjoin(User, User.id == BlindAnswer.user_id)
        .where(BlindTask.audit_id == audit_id, BlindTask.kind == AUDIT)
        .order_by(BlindTask.id)
    )
    with database.read() as session:
        rows = session.execute(query).all()
    items = []
    for task, band, label, answer, name in rows:
        given = Answer(name, answer.action, answer.label, answer.created_at, answer.decision_id) if answer else None
        items.append(AuditItem(task.id, task.image_id, band, label, task.status, given))
    return items


def count_open(database: Database) -> dict[str, int]:
    """Open blind tasks by kind, and disputes waiting for an admin."""
    with database.read() as session:
        rows = session.execute(
            select(BlindTask.kind, BlindTask.status, func.count())
            .where(BlindTask.status.in_([OPEN, DISPUTED]))
            .group_by(BlindTask.kind, BlindTask.status)
        ).all()
    counts = {AUDIT: 0, SECOND: 0, DISPUTED: 0}
    for kind, status, n in rows:
        counts[DISPUTED if status == DISPUTED else kind] += n
    return counts


def answers_for_image(database: Database, image_id: int) -> list[tuple[TaskRow, Answer]]:
    """Every blind answer given on the image, with its task, oldest first."""
    with database.read() as session:
        rows = session.execute(
            select(BlindTask, BlindAnswer, User.name)
            .join(BlindAnswer, BlindAnswer.task_id == BlindTask.id)
            .join(User, User.id == BlindAnswer.user_id)
            .where(BlindTask.image_id == image_id)
            .order_by(BlindAnswer.id)
        ).all()
    return [
        (_task(task), Answer(name, answer.action, answer.label, answer.created_at, answer.decision_id))
        for task, answer, name in rows
    ]
