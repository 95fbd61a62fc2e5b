"""The tables, as SQLAlchemy 2.0 typed models. Migrations in db/migrations mirror this file."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time made timezone-aware: SQLite hands back naive datetimes, and every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Label(Base):
    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # expert | admin
    password_hash: Mapped[str] = mapped_column(String(300))
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebSession(Base):
    """A browser login to /review. Only the SHA-256 of the cookie's token is stored, so a copy of the
    database does not hand out live sessions; password_stamp ends the session when the password changes."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    password_stamp: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ImportBatch(Base):
    __tablename__ = "import_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # folder | zip | urls | upload | demo
    source: Mapped[str] = mapped_column(Text)
    user_name: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    added: Mapped[int] = mapped_column(default=0)
    duplicates: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)


class ImportRejection(Base):
    __tablename__ = "import_rejections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batches.id"), index=True)
    item: Mapped[str] = mapped_column(Text)  # file name, zip entry or URL
    reason: Mapped[str] = mapped_column(String(40))  # a RejectReason value
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Image(Base):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    stored_path: Mapped[str] = mapped_column(Text)  # relative to the data directory
    thumb_path: Mapped[str] = mapped_column(Text)
    original_name: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)  # source path, zip entry or URL
    format: Mapped[str] = mapped_column(String(10))
    byte_size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"), index=True)
    status: Mapped[str] = mapped_column(String(10), default="active")  # active | deleted
    split: Mapped[str] = mapped_column(String(5))  # train | valid
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("import_batches.id"))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_images_status_split", "status", "split"),)


class Decision(Base):
    """Append-only: one row per expert action; an image's label and status follow from these."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(20))  # one of labeling/review.py's ACTIONS, or "undo"
    old_label: Mapped[str | None] = mapped_column(String(200))
    new_label: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(50))  # the promoted version serving then
    scorer: Mapped[str | None] = mapped_column(String(200))  # the scoring pass that ranked the image
    score: Mapped[float | None] = mapped_column(Float)  # its label-error score in that pass
    undoes_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"))
    # Why it was made, when not from the ranked queue: "audit" (a blind audit item) or "settle" (an admin's
    # answer to two experts who disagreed). Audit decisions are normal decisions; the log marks them.
    purpose: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    trigger: Mapped[str] = mapped_column(String(20), default="manual")
    # "finetune" (the network, fastai) or "head" (a linear head on the ranking's cached embeddings)
    kind: Mapped[str] = mapped_column(String(10), default="finetune", server_default="finetune")
    arch: Mapped[str] = mapped_column(String(50))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    device: Mapped[str | None] = mapped_column(String(50))
    progress: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    image_count: Mapped[int | None] = mapped_column(Integer)
    last_decision_id: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The training slot: 1 while the run is queued or running, NULL once it ended. Its unique
    # constraint lets the database itself refuse a second active run, from any process.
    active_slot: Mapped[int | None] = mapped_column(Integer, unique=True, index=True)
    worker_host: Mapped[str | None] = mapped_column(String(200))
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(50), unique=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id"))
    path: Mapped[str] = mapped_column(Text)  # relative to the data directory
    status: Mapped[str] = mapped_column(String(20), default="candidate")
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Embedding(Base):
    """A cached backbone embedding of one image (float32 bytes), computed once per embedder."""

    __tablename__ = "embeddings"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    embedder: Mapped[str] = mapped_column(String(50), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Score(Base):
    """How likely an image's label is wrong, from one scoring pass (out-of-sample probabilities)."""

    __tablename__ = "scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    scorer: Mapped[str] = mapped_column(String(80))
    score: Mapped[float] = mapped_column(Float)
    given_label: Mapped[str | None] = mapped_column(String(200))
    predicted_label: Mapped[str] = mapped_column(String(200))
    given_probability: Mapped[float | None] = mapped_column(Float)
    top: Mapped[list] = mapped_column(JSON, default=list)  # [[label, probability], …] best first
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("image_id", "scorer"), Index("ix_scores_scorer_score", "scorer", "score"))


class Lease(Base):
    """An item of the review queue handed to one expert until expires_at, so no two get it at once."""

    __tablename__ = "leases"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DuplicatePair(Base):
    """Two active images whose embeddings are nearly the same, waiting for an expert's call."""

    __tablename__ = "duplicate_pairs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    second_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    similarity: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | resolved
    resolution: Mapped[str | None] = mapped_column(String(20))  # keep_first | keep_second | keep_both | keep_neither
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("first_id", "second_id"),)


class DatasetMap(Base):
    """A 2-D map of the active images' features, computed after a rescore; the newest row is the one shown.

    pass_stamp says which scoring pass it was made from (db/scores.py pass_stamp), so a map is
    rebuilt only when the pass changed. image_ids (int64) and xy (float32, N x 2) are numpy bytes.
    """

    __tablename__ = "dataset_maps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scorer: Mapped[str] = mapped_column(String(200))
    pass_stamp: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    seconds: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    image_ids: Mapped[bytes] = mapped_column(LargeBinary)
    xy: Mapped[bytes] = mapped_column(LargeBinary)


class Audit(Base):
    """A blind audit: images drawn at random from the unreviewed ones, stratified by score band.

    bands holds each band's score range ([{"name", "low", "high"}], lowest first); scorer is the pass
    whose scores made the bands.
    """

    __tablename__ = "audits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    size: Mapped[int] = mapped_column(Integer)
    scorer: Mapped[str] = mapped_column(String(200))
    bands: Mapped[list] = mapped_column(JSON, default=list)


class AuditMember(Base):
    """One image of an audit's population (the unreviewed images when it was drawn), its band, whether drawn."""

    __tablename__ = "audit_members"

    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    band: Mapped[int] = mapped_column(Integer)
    sampled: Mapped[bool] = mapped_column(default=False)
    label: Mapped[str | None] = mapped_column(String(200))  # the label when it was drawn


class BlindTask(Base):
    """An image to be judged blind (no prediction, score or reason shown): an audit item, or a second
    opinion on an earlier decision, which the expert who made that decision never gets."""

    __tablename__ = "blind_tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # audit | second
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    audit_id: Mapped[int | None] = mapped_column(ForeignKey("audits.id"), index=True)
    shown_label: Mapped[str | None] = mapped_column(String(200))  # the label the expert is asked about
    first_decision_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"), index=True)
    excluded_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # open | answered (audit) | agreed | disputed | settled (second opinions) | withdrawn (first decision undone)
    status: Mapped[str] = mapped_column(String(10), default="open")
    settled_decision_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_blind_tasks_status_kind", "status", "kind"),)


class BlindAnswer(Base):
    """One expert's answer to a blind task: the label they say the image shows (None: delete it)."""

    __tablename__ = "blind_answers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("blind_tasks.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(20))  # keep | relabel | delete
    label: Mapped[str | None] = mapped_column(String(200))
    decision_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"))  # an audit answer's decision
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("task_id", "user_id"),)


class ClassGuide(Base):
    """An admin's short definition of a class and a few pinned example images, shown beside Review's item."""

    __tablename__ = "class_guides"

    label: Mapped[str] = mapped_column(String(200), primary_key=True)
    definition: Mapped[str] = mapped_column(Text, default="")
    example_ids: Mapped[list] = mapped_column(JSON, default=list)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ApiToken(Base):
    """A token an admin made for a program (Label Studio's ML backend connection); only its SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # the first characters, to tell tokens apart in Admin
    scope: Mapped[str] = mapped_column(String(30))  # label-studio
    # The Label Studio the token was made for, as the admin typed it: the one origin Loupe sends that
    # Label Studio's own token to, and fetches from even when its address is private.
    origin: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LabelStudioProject(Base):
    """A Label Studio project connected to Loupe as its ML backend, as its last /setup described it."""

    __tablename__ = "label_studio_projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_uid: Mapped[str] = mapped_column(String(100), unique=True)  # Label Studio's "<id>.<created>"
    hostname: Mapped[str] = mapped_column(Text, default="")  # where its uploaded files are served
    # The Label Studio user token /setup sends, to fetch files uploaded into Label Studio; Label Studio
    # gives it to every ML backend it calls, so it is kept like the database's other secrets.
    access_token: Mapped[str] = mapped_column(Text, default="")
    label_config: Mapped[str] = mapped_column(Text, default="")
    from_name: Mapped[str] = mapped_column(String(100), default="")  # the Choices tag
    to_name: Mapped[str] = mapped_column(String(100), default="")  # the Image tag
    image_key: Mapped[str] = mapped_column(String(100), default="")  # the task data key of the image
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    setup_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LabelStudioTask(Base):
    """A Label Studio task and the Loupe image its picture became."""

    __tablename__ = "label_studio_tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("label_studio_projects.id"), index=True)
    task_id: Mapped[int] = mapped_column(BigInteger)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    image_ref: Mapped[str] = mapped_column(Text)  # the task's image URL or path, as Label Studio gave it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("project_id", "task_id"),)


class LabelStudioAnnotation(Base):
    """One Label Studio annotation event Loupe acted on, so a webhook sent twice makes one decision."""

    __tablename__ = "label_studio_annotations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("label_studio_projects.id"), index=True)
    annotation_id: Mapped[int] = mapped_column(BigInteger)
    revision: Mapped[str] = mapped_column(String(60))  # the annotation's updated_at: an edit is a new event
    task_id: Mapped[int] = mapped_column(BigInteger)
    annotator: Mapped[str] = mapped_column(String(200))
    label: Mapped[str | None] = mapped_column(String(200))
    decision_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"))
    outcome: Mapped[str] = mapped_column(Text)  # what Loupe did with it, in a sentence
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("project_id", "annotation_id", "revision"),)


class EventHook(Base):
    """A URL an admin registered to receive signed JSON POSTs when chosen events happen (training/hooks.py)."""

    __tablename__ = "event_hooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    # The HMAC key of the signature header: shown once to the admin, and kept because every delivery is signed.
    secret: Mapped[str] = mapped_column(String(100))
    events: Mapped[list] = mapped_column(JSON, default=list)  # "version.promoted", "run.failed"
    allow_private: Mapped[bool] = mapped_column(default=False)  # the admin allowed inside addresses explicitly
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: the command line
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # removed: no new deliveries


class HookDelivery(Base):
    """One event owed to one hook: pending until a 2xx answers it, failed once retrying cannot help."""

    __tablename__ = "hook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hook_id: Mapped[int] = mapped_column(ForeignKey("event_hooks.id"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict] = mapped_column(JSON)  # the body sent, {"event", "at", "data"}
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # None once settled
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_hook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),)


class AppState(Base):
    """Small named JSON values shared by every process: the loop's policy, what the quick loop last saw."""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


# APScheduler's job store reads and writes this table itself (training/scheduler.py); it is declared here, in
# APScheduler 3's layout, so that migration 0006 creates it before any scheduler starts: two processes starting
# on a fresh database used to race to create it, and one of them died.
scheduler_jobs = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
