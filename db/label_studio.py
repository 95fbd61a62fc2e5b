"""The Label Studio connection's SQL: API tokens, connected projects, task↔image links, annotation events.

The rules (who may connect, what a task's image is, what an annotation decides) are
labeling/label_studio.py's; this module reads and writes rows in short transactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from db.engine import Database
from db.schema import ApiToken, LabelStudioAnnotation, LabelStudioProject, LabelStudioTask, User, utcnow


@dataclass(frozen=True)
class TokenRow:
    """An API token as stored (never the token itself)."""

    id: int
    name: str
    prefix: str
    scope: str
    origin: str
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class ProjectRow:
    """A connected Label Studio project, as its last /setup described it."""

    id: int
    project_uid: str
    hostname: str
    access_token: str
    label_config: str
    from_name: str
    to_name: str
    image_key: str
    token_id: int | None
    setup_at: datetime


@dataclass(frozen=True)
class EventRow:
    """One annotation event and what Loupe did with it."""

    project_uid: str
    annotation_id: int
    task_id: int
    annotator: str
    label: str | None
    decision_id: int | None
    outcome: str
    received_at: datetime


def _token_row(token: ApiToken, creator: str | None) -> TokenRow:
    return TokenRow(
        token.id, token.name, token.prefix, token.scope, token.origin, creator, token.created_at,
        token.last_used_at, token.revoked_at,
    )  # fmt: skip


def _project_row(project: LabelStudioProject) -> ProjectRow:
    return ProjectRow(
        project.id, project.project_uid, project.hostname, project.access_token, project.label_config,
        project.from_name, project.to_name, project.image_key, project.token_id, project.setup_at,
    )  # fmt: skip


class NameTaken(Exception):
    """A token with that name exists already."""


# --- tokens ------------------------------------------------------------------------------------------


def add_token(
    database: Database, name: str, token_hash: str, prefix: str, scope: str, origin: str, created_by: int | None
) -> TokenRow:
    """Store a new token's hash; NameTaken when the name is in use."""
    try:
        with database.write() as session:
            token = ApiToken(
                name=name, token_hash=token_hash, prefix=prefix, scope=scope, origin=origin, created_by=created_by
            )
            session.add(token)
            session.flush()
            creator = session.scalar(select(User.name).where(User.id == created_by)) if created_by else None
            return _token_row(token, creator)
    except IntegrityError:
        raise NameTaken(name) from None


def token_by_hash(database: Database, token_hash: str) -> TokenRow | None:
    """The live (not revoked) token with that hash."""
    with database.read() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None)))
        return _token_row(token, None) if token else None


def get_token(database: Database, token_id: int) -> TokenRow | None:
    """The token with that id, revoked or not."""
    with database.read() as session:
        token = session.get(ApiToken, token_id)
        return _token_row(token, None) if token else None


def touch_token(database: Database, token_id: int) -> None:
    """Note that the token was just used (shown in Admin)."""
    with database.write() as session:
        session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))


def list_tokens(database: Database) -> list[TokenRow]:
    """Every token, newest first, with the name of the admin who made it."""
    with database.read() as session:
        rows = session.execute(
            select(ApiToken, User.name).outerjoin(User, User.id == ApiToken.created_by).order_by(ApiToken.id.desc())
        ).all()
        return [_token_row(token, creator) for token, creator in rows]


def revoke_token(database: Database, name: str) -> bool:
    """Revoke the live token called name; False when there is none."""
    with database.write() as session:
        done = session.execute(
            update(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow())
        )
        return done.rowcount > 0


# --- projects ----------------------------------------------------------------------------------------


def save_project(
    database: Database,
    project_uid: str,
    *,
    hostname: str,
    access_token: str,
    label_config: str,
    from_name: str,
    to_name: str,
    image_key: str,
    token_id: int,
) -> ProjectRow:
    """Insert or update the project /setup described."""
    values = dict(
        hostname=hostname, access_token=access_token, label_config=label_config, from_name=from_name,
        to_name=to_name, image_key=image_key, token_id=token_id, setup_at=utcnow(),
    )  # fmt: skip
    for _attempt in range(2):  # two /setup calls for a new project may race to insert it
        try:
            with database.write() as session:
                project = session.scalar(
                    select(LabelStudioProject).where(LabelStudioProject.project_uid == project_uid)
                )
                if project is None:
                    project = LabelStudioProject(project_uid=project_uid, **values)
                    session.add(project)
                else:
                    for key, value in values.items():
                        setattr(project, key, value)
                session.flush()
                return _project_row(project)
        except IntegrityError:
            continue
    raise RuntimeError(f"could not save Label Studio project {project_uid}")


def get_project(database: Database, project_uid: str) -> ProjectRow | None:
    """The project with that uid ("<id>.<created timestamp>")."""
    with database.read() as session:
        project = session.scalar(select(LabelStudioProject).where(LabelStudioProject.project_uid == project_uid))
        return _project_row(project) if project else None


def projects_numbered(database: Database, number: int) -> list[ProjectRow]:
    """The projects whose Label Studio id is number (a webhook names only the id)."""
    with database.read() as session:
        projects = session.scalars(
            select(LabelStudioProject).where(LabelStudioProject.project_uid.like(f"{int(number)}.%"))
        ).all()
        return [_project_row(p) for p in projects]


def list_projects(database: Database) -> list[tuple[ProjectRow, int, int]]:
    """Every project with its number of linked tasks and of annotation events, newest setup first."""
    with database.read() as session:
        tasks = (
            select(LabelStudioTask.project_id, func.count().label("n")).group_by(LabelStudioTask.project_id).subquery()
        )
        events = (
            select(LabelStudioAnnotation.project_id, func.count().label("n"))
            .group_by(LabelStudioAnnotation.project_id)
            .subquery()
        )
        rows = session.execute(
            select(LabelStudioProject, func.coalesce(tasks.c.n, 0), func.coalesce(events.c.n, 0))
            .outerjoin(tasks, tasks.c.project_id == LabelStudioProject.id)
            .outerjoin(events, events.c.project_id == LabelStudioProject.id)
            .order_by(LabelStudioProject.setup_at.desc())
        ).all()
        return [(_project_row(p), n_tasks, n_events) for p, n_tasks, n_events in rows]


# --- tasks -------------------------------------------------------------------------------------------


def linked_images(database: Database, project_id: int, task_ids: list[int]) -> dict[int, tuple[int, str]]:
    """For each task already linked: (its image id, the image reference it was fetched from)."""
    with database.read() as session:
        rows = session.execute(
            select(LabelStudioTask.task_id, LabelStudioTask.image_id, LabelStudioTask.image_ref).where(
                LabelStudioTask.project_id == project_id, LabelStudioTask.task_id.in_(task_ids)
            )
        ).all()
        return {task_id: (image_id, ref) for task_id, image_id, ref in rows}


def link_task(database: Database, project_id: int, task_id: int, image_id: int, image_ref: str) -> None:
    """Link the task to its image (again, when its image reference changed)."""
    with database.write() as session:
        link = session.scalar(
            select(LabelStudioTask).where(LabelStudioTask.project_id == project_id, LabelStudioTask.task_id == task_id)
        )
        if link is None:
            session.add(LabelStudioTask(project_id=project_id, task_id=task_id, image_id=image_id, image_ref=image_ref))
        else:
            link.image_id, link.image_ref = image_id, image_ref


# --- annotation events -------------------------------------------------------------------------------


def claim_event(
    database: Database, project_id: int, *, annotation_id: int, revision: str, task_id: int, annotator: str,
    label: str | None,
) -> int | None:  # fmt: skip
    """Claim one annotation revision for acting on; None when it was claimed already (Label Studio may send
    it twice, and /predict carries it too), so it makes one decision."""
    try:
        with database.write() as session:
            event = LabelStudioAnnotation(
                project_id=project_id, annotation_id=annotation_id, revision=revision, task_id=task_id,
                annotator=annotator[:200], label=label, outcome="in progress",
            )  # fmt: skip
            session.add(event)
            session.flush()
            return event.id
    except IntegrityError:
        return None


def finish_event(database: Database, event_id: int, decision_id: int | None, outcome: str) -> None:
    """Record what Loupe did with a claimed annotation revision."""
    with database.write() as session:
        session.execute(
            update(LabelStudioAnnotation)
            .where(LabelStudioAnnotation.id == event_id)
            .values(decision_id=decision_id, outcome=outcome)
        )


def recent_events(database: Database, limit: int = 50) -> list[EventRow]:
    """The newest annotation events, newest first."""
    with database.read() as session:
        rows = session.execute(
            select(LabelStudioAnnotation, LabelStudioProject.project_uid)
            .join(LabelStudioProject, LabelStudioProject.id == LabelStudioAnnotation.project_id)
            .order_by(LabelStudioAnnotation.id.desc())
            .limit(limit)
        ).all()
        return [
            EventRow(
                uid,
                event.annotation_id,
                event.task_id,
                event.annotator,
                event.label,
                event.decision_id,
                event.outcome,
                event.received_at,
            )  # fmt: skip
            for event, uid in rows
        ]
