"""Loupe as a Label Studio ML backend: tokens, /setup, /predict and annotation webhooks.

Label Studio calls an ML backend at <url>/health, /setup, /predict and /webhook (label-studio-ml-backend's
label_studio_ml/api.py). Loupe answers those under /label-studio (api/label_studio.py) with these rules:

- An admin makes a token for one Label Studio URL. Label Studio sends it as the Basic-auth password of
  its ML backend connection; Loupe keeps only its SHA-256.
- /setup records the project: its labeling config (which Choices tag and Image tag Loupe answers for) and
  the access token Label Studio hands its backends, which Loupe sends back to fetch the task images.
- /predict answers each task with the served model's class and, as score, how likely the task's current
  label is wrong: Label Studio's Data Manager sorts by it. Each task's image becomes a Loupe image.
- /webhook: Label Studio's automatic webhook to its ML backend carries no credentials, so Loupe trusts
  nothing in it but the annotation's id: it reads the annotation back from the Label Studio the token was
  made for, and records that as a decision by the Label Studio user who made it.

Images and annotations are fetched through classify-url's guarded fetcher; only the admin's Label Studio
origin may be a private address, and only it is sent the access token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, urlparse

from context import Context
from db import images as image_db
from db import label_studio as ls_db
from db import users as user_db
from db.decisions import last_decision_id
from db.store import content_hash
from errors import Conflict, LoupeError, NotAuthenticated, NotFound
from labeling import review
from labeling.imports.formats import annotation_choice, newest_annotation
from labeling.imports.ingest import Candidate, Refused, import_candidates
from labeling.imports.safe_fetch import ServerRefused, TrustedOrigin, fetch_image_url, origin_of
from models.imagecheck import ImageRejected, RejectReason
from models.predictor import NoModelYet, Prediction
from models.serving import Serving

SCOPE = "label-studio"
TOKEN_PREFIX = "loupe_ls_"
PURPOSE = "label-studio"  # decisions.purpose of an annotation made in Label Studio
ANNOTATOR_PREFIX = "label-studio:"  # Loupe user names of Label Studio annotators
MAX_TASKS = 5000  # tasks one /predict may send (Label Studio sends every selected task at once)
MAX_JSON_BYTES = 1024 * 1024  # an annotation or task read back from Label Studio
FETCH_WORKERS = 4
ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
_UID = re.compile(r"^[0-9A-Za-z._-]{1,100}$")


class LabelStudioError(LoupeError):
    """A Label Studio request Loupe cannot act on, with the reason."""


@dataclass(frozen=True)
class NewToken:
    """A token just made: the secret, shown once, and its stored row."""

    token: str
    row: ls_db.TokenRow


# --- tokens ------------------------------------------------------------------------------------------


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_token(context: Context, user: user_db.UserRow | None, name: str, url: str) -> NewToken:
    """A new token for the Label Studio at url (admins); the token itself is returned once, never stored."""
    admin = review.require_role(user, review.ADMIN)
    name = (name or "").strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise LabelStudioError("a token needs a name of 1 to 100 printable characters")
    base = (url or "").strip().rstrip("/")
    if not origin_of(base) or urlparse(base).query or urlparse(base).fragment:
        raise LabelStudioError(
            f"{url!r} is not a Label Studio address; give its http(s) URL, e.g. http://localhost:8080"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        row = ls_db.add_token(context.database, name, _hash(token), token[:12], SCOPE, base, admin.id)
    except ls_db.NameTaken:
        raise LabelStudioError(f"a token called {name!r} exists already; choose another name") from None
    return NewToken(token, row)


def revoke_token(context: Context, user: user_db.UserRow | None, name: str) -> None:
    """Revoke the token called name (admins); Label Studio's next call with it is refused."""
    review.require_role(user, review.ADMIN)
    if not ls_db.revoke_token(context.database, name):
        raise NotFound(f"no live token is called {name!r}")


def tokens(context: Context, user: user_db.UserRow | None) -> list[ls_db.TokenRow]:
    """Every token, newest first (admins)."""
    review.require_role(user, review.ADMIN)
    return ls_db.list_tokens(context.database)


def _presented_token(authorization: str | None) -> str:
    """The token in an Authorization header: Basic (the password), Token or Bearer."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    if scheme.lower() in ("token", "bearer"):
        return value
    return ""


def authenticate(context: Context, authorization: str | None) -> ls_db.TokenRow:
    """The live token the request presents, or NotAuthenticated."""
    presented = _presented_token(authorization)
    row = ls_db.token_by_hash(context.database, _hash(presented)) if presented else None
    if row is None:
        raise NotAuthenticated(
            "not_authenticated: connect Label Studio with a token made in Loupe's Admin → Label Studio "
            "(or `loupe label-studio token`), as the Basic-auth password of the ML backend connection"
        )
    ls_db.touch_token(context.database, row.id)
    return row


# --- the labeling config -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifyingTags:
    """The tags Loupe answers for: a Choices tag (from_name) about an Image tag (to_name) showing $image_key."""

    from_name: str
    to_name: str
    image_key: str


def classifying_tags(label_config: str) -> ClassifyingTags:
    """The first Choices tag whose toName is an Image tag, or LabelStudioError saying what is missing."""
    try:
        root = ElementTree.fromstring(label_config or "")
    except ElementTree.ParseError as error:
        raise LabelStudioError(f"the labeling config is not valid XML ({error})") from None
    images = {
        tag.get("name"): tag.get("value", "") for tag in root.iter() if tag.tag.lower() == "image" and tag.get("name")
    }
    for tag in root.iter():
        if tag.tag.lower() != "choices":
            continue
        target = (tag.get("toName") or "").split(",")[0]
        value = images.get(target, "")
        if tag.get("name") and value.startswith("$") and len(value) > 1:
            return ClassifyingTags(tag.get("name"), target, value[1:])
    raise LabelStudioError(
        "Loupe classifies whole images: the labeling config needs a <Choices> tag whose toName is an "
        '<Image> tag with value="$…", as in Label Studio\'s Image Classification template'
    )


# --- /setup ------------------------------------------------------------------------------------------


def model_version(serving: Serving) -> str:
    """The version Label Studio records on predictions: the served model's, or "none" before the first."""
    return serving.predictor.version or "none"


def setup(context: Context, serving: Serving, token: ls_db.TokenRow, body: dict) -> dict:
    """Record the project Label Studio connects (its config, and the access token for its files)."""
    uid = str(body.get("project") or "")
    if not _UID.match(uid):
        raise LabelStudioError("setup needs the project id Label Studio sends as `project`")
    tags = classifying_tags(str(body.get("schema") or body.get("label_config") or ""))
    ls_db.save_project(
        context.database,
        uid,
        hostname=str(body.get("hostname") or "")[:2000],
        access_token=str(body.get("access_token") or "")[:2000],
        label_config=str(body.get("schema") or ""),
        from_name=tags.from_name,
        to_name=tags.to_name,
        image_key=tags.image_key,
        token_id=token.id,
    )
    return {"model_version": model_version(serving)}


def _project_for(context: Context, token: ls_db.TokenRow, uid: str) -> ls_db.ProjectRow:
    project = ls_db.get_project(context.database, uid) if _UID.match(uid) else None
    if project is None:
        raise Conflict(f"Label Studio project {uid!r} has not been set up; save the ML backend connection again")
    if project.token_id != token.id:
        owner = ls_db.get_token(context.database, project.token_id) if project.token_id else None
        if owner is None or owner.origin != token.origin:
            raise LabelStudioError(f"project {uid!r} was connected with a token for another Label Studio")
    return project


# --- fetching from Label Studio ----------------------------------------------------------------------


def _trusted(token: ls_db.TokenRow, project: ls_db.ProjectRow) -> TrustedOrigin:
    headers = {"Authorization": f"Token {project.access_token}"} if project.access_token else {}
    return TrustedOrigin(token.origin, headers)


def task_image_url(token: ls_db.TokenRow, ref: str) -> str:
    """The URL of a task's image: a path on the Label Studio (an upload, local files, a presigned link) is
    joined to the URL the token was made for; an http(s) URL is used as it is."""
    if ref.startswith("/") and not ref.startswith("//"):
        return token.origin + ref
    if urlparse(ref).scheme in ("http", "https"):
        return ref
    raise ImageRejected(
        RejectReason.UNSAFE_URL,
        f"{ref[:200]!r} is neither a Label Studio path nor an http(s) URL; cloud storage must be served "
        "through Label Studio (its /data/… or presigned links)",
    )


def _fetch(context: Context, token: ls_db.TokenRow, project: ls_db.ProjectRow, url: str, max_bytes: int) -> bytes:
    settings = context.settings
    trusted = _trusted(token, project)
    try:
        return fetch_image_url(
            url,
            timeout_s=settings.url_timeout_s,
            max_bytes=max_bytes,
            allow_private=settings.allow_private_urls,
            trusted=trusted,
        )
    except ServerRefused as refused:
        if refused.status_code in (401, 403) and trusted.holds(url):
            raise ImageRejected(
                refused.reason,
                f"{refused.detail}: Label Studio refused the access token it gave Loupe at setup. Label "
                "Studio 1.23 turns legacy tokens off by default: turn them on (Organization → API Tokens "
                "Settings, or start it with --enable-legacy-api-token), then save the ML backend again",
            ) from None
        raise


def _read_json(context: Context, token: ls_db.TokenRow, project: ls_db.ProjectRow, path: str) -> dict:
    data = _fetch(context, token, project, token.origin + path, MAX_JSON_BYTES)
    try:
        found = json.loads(data)
    except ValueError:
        raise LabelStudioError(f"Label Studio's {path} did not answer JSON") from None
    if not isinstance(found, dict):
        raise LabelStudioError(f"Label Studio's {path} did not answer an object")
    return found


# --- /predict ----------------------------------------------------------------------------------------


def _annotation_label(annotation: dict | None, from_name: str) -> str | None:
    """The class an annotation chose with the from_name tag; None when cancelled or it chose none."""
    if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
        return None
    choice = annotation_choice(annotation, from_name)
    return choice if isinstance(choice, str) else None


def task_label(task: dict, from_name: str) -> str | None:
    """The task's current label in Label Studio: its newest annotation's choice, if any."""
    return _annotation_label(newest_annotation(task), from_name)


def wrong_label_likelihood(prediction: Prediction, label: str | None) -> float:
    """How likely label is wrong by the served model: 1 − p(label); with no label, 1 − p(its own top class)."""
    probabilities = dict(prediction.predictions)
    if label is None:
        return 1.0 - max(probabilities.values(), default=0.0)
    return 1.0 - probabilities.get(label, 0.0)


@dataclass
class _TaskImage:
    task_id: int
    ref: str
    image_id: int | None = None
    data: bytes | None = None
    label: str | None = None
    refused: str | None = None


def _task_images(
    context: Context, token: ls_db.TokenRow, project: ls_db.ProjectRow, tasks: Sequence[dict]
) -> list[_TaskImage]:
    """Each task's image bytes and Loupe image id: linked tasks are read from the store; new ones are
    fetched, checked and imported as one batch (refusals recorded with their reason)."""
    items = []
    for task in tasks:
        task_id = task.get("id") if isinstance(task, dict) else None
        data = task.get("data") if isinstance(task, dict) else None
        ref = data.get(project.image_key) if isinstance(data, dict) else None
        item = _TaskImage(task_id if isinstance(task_id, int) else -1, ref if isinstance(ref, str) else "")
        item.label = task_label(task, project.from_name) if isinstance(task, dict) else None
        if item.task_id < 0 or not item.ref:
            item.refused = f"the task has no id or no data.{project.image_key}"
        items.append(item)
    linked = ls_db.linked_images(context.database, project.id, [i.task_id for i in items if i.refused is None])
    to_fetch = []
    for item in items:
        image_id, ref = linked.get(item.task_id, (None, None))
        image = image_db.get_image(context.database, image_id) if image_id is not None and ref == item.ref else None
        if image is not None and image.status != "purged" and context.store.absolute(image.stored_path).exists():
            item.image_id, item.data = image.id, context.store.absolute(image.stored_path).read_bytes()
        elif item.refused is None:
            to_fetch.append(item)

    def fetch(item: _TaskImage) -> Candidate | Refused:
        try:
            url = task_image_url(token, item.ref)
            item.data = _fetch(context, token, project, url, context.settings.max_image_bytes)
        except ImageRejected as refused:
            item.refused = f"{refused.reason.value}: {refused.detail}"
            return Refused(f"task {item.task_id}: {item.ref[:200]}", refused.reason, refused.detail)
        name = urlparse(item.ref).path.rsplit("/", 1)[-1] or f"task-{item.task_id}"
        # Unlabeled: labels come in as decisions by the annotator who chose them (_record_annotation).
        return Candidate(name, f"label-studio {project.project_uid} task {item.task_id}", None, lambda: item.data)

    if to_fetch:
        with ThreadPoolExecutor(FETCH_WORKERS) as pool:
            candidates = list(pool.map(fetch, to_fetch))
        summary = import_candidates(
            context, "labelstudio", f"Label Studio project {project.project_uid}", candidates, len(candidates)
        )
        refused_sources = {r.item for r in summary.rejected}
        for item, candidate in zip(to_fetch, candidates, strict=True):
            if isinstance(candidate, Refused) or candidate.source in refused_sources:
                item.refused = item.refused or next(
                    f"{r.reason.value}: {r.detail}" for r in summary.rejected if r.item == candidate.source
                )
                continue
            image = image_db.find_by_hash(context.database, content_hash(item.data))
            item.image_id = image.id if image else None
            if image is not None:
                ls_db.link_task(context.database, project.id, item.task_id, image.id, item.ref)
    return items


def predict(context: Context, serving: Serving, token: ls_db.TokenRow, body: dict) -> dict:
    """Label Studio's /predict: per task, the served model's class and the likelihood its label is wrong."""
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        raise LabelStudioError("predict needs `tasks`, a list")
    if len(tasks) > MAX_TASKS:
        raise LabelStudioError(f"{len(tasks):,} tasks in one call; Loupe answers at most {MAX_TASKS:,} at a time")
    project = _project_for(context, token, str(body.get("project") or ""))
    version = serving.predictor.version
    if version is None:
        raise NoModelYet()
    results = []
    for task, item in zip(tasks, _task_images(context, token, project, tasks), strict=True):
        if item.data is None:
            results.append([])  # no prediction: Label Studio asks again next time
            continue
        _catch_up(context, token, project, task, item)
        prediction = serving.predict_bytes(item.data)
        label = item.label
        if label is None and item.image_id is not None:
            image = image_db.get_image(context.database, item.image_id)
            label = image.label if image else None
        top = prediction.predictions[0][0]
        results.append(
            {
                "model_version": prediction.model_version,
                "score": round(wrong_label_likelihood(prediction, label), 6),
                "result": [
                    {
                        "from_name": project.from_name,
                        "to_name": project.to_name,
                        "type": "choices",
                        "value": {"choices": [top]},
                    }
                ],
            }
        )
    return {"results": results, "model_version": version}


def _catch_up(context: Context, token, project, task, item: _TaskImage) -> None:
    """Record the task's newest annotation as a decision if no webhook brought it (one made before Loupe
    was connected, or a webhook that failed); /predict comes with the token, so its annotations are trusted."""
    annotation = newest_annotation(task) if isinstance(task, dict) else None
    annotation_id = _number(annotation.get("id")) if annotation else None
    if annotation_id is not None and item.image_id is not None and item.label is not None:
        _record_annotation(context, token, project, annotation_id, {**annotation, "task": item.task_id})


# --- /webhook ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookOutcome:
    """What Loupe did with a webhook call, in a sentence (and the decision it made, if any)."""

    outcome: str
    decision_id: int | None = None


def _number(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**62 else None


def _annotator(context: Context, token, project, completed_by) -> user_db.UserRow:
    """The Loupe account that stands for a Label Studio user (made on first sight, with no password).

    completed_by is the user's id (a webhook, /api/annotations) or the user itself (a task's annotations).
    """
    email = completed_by.get("email") if isinstance(completed_by, dict) else None
    user_id = _number(completed_by.get("id") if isinstance(completed_by, dict) else completed_by)
    if email is None and user_id is not None:
        try:
            email = _read_json(context, token, project, f"/api/users/{user_id}").get("email")
        except (ImageRejected, LabelStudioError):
            email = None
    who = email if isinstance(email, str) and email.strip() else f"user {user_id or 'unknown'}"
    return user_db.ensure_account_without_login(context.database, (ANNOTATOR_PREFIX + who.strip())[:100], "expert")


def on_webhook(context: Context, body: dict) -> WebhookOutcome:
    """Act on a Label Studio webhook: an annotation made or changed becomes a decision on its image.

    The call is not trusted: only the annotation's id and project number are read from it, and the
    annotation itself is read back from the Label Studio that project was connected from.
    """
    action = body.get("action")
    if action not in ANNOTATION_EVENTS:
        return WebhookOutcome(f"ignored: Loupe acts on {' and '.join(ANNOTATION_EVENTS)}, not {str(action)[:40]!r}")
    annotation = body.get("annotation") if isinstance(body.get("annotation"), dict) else {}
    project_field = body.get("project")
    number = _number(annotation.get("project")) or _number(
        project_field.get("id") if isinstance(project_field, dict) else project_field
    )
    annotation_id = _number(annotation.get("id"))
    if number is None or annotation_id is None:
        raise LabelStudioError("the webhook names no annotation id and project")
    projects = ls_db.projects_numbered(context.database, number)
    if not projects:
        raise NotFound(f"Label Studio project {number} is not connected to Loupe")
    last_error: Exception | None = None
    for project in projects:
        token = ls_db.get_token(context.database, project.token_id) if project.token_id else None
        if token is None or token.revoked_at is not None:
            continue
        try:
            found = _read_json(context, token, project, f"/api/annotations/{annotation_id}")
        except (ImageRejected, LabelStudioError) as error:
            last_error = error
            continue
        if _number(found.get("project")) not in (None, number):
            continue
        return _record_annotation(context, token, project, annotation_id, found)
    if last_error is not None:
        detail = getattr(last_error, "detail", None) or str(last_error)
        raise LabelStudioError(f"annotation {annotation_id} could not be read back from Label Studio: {detail}")
    raise NotFound(f"no live token connects Label Studio project {number}")


def _record_annotation(context, token, project, annotation_id: int, annotation: dict) -> WebhookOutcome:
    """Decide the annotation's task image as the annotation says, once per revision of the annotation."""
    revision = str(annotation.get("updated_at") or annotation.get("created_at") or "")[:60]
    task_id = _number(annotation.get("task"))
    if task_id is None:
        raise LabelStudioError(f"annotation {annotation_id} names no task")
    label = _annotation_label(annotation, project.from_name)
    who = _annotator(context, token, project, annotation.get("completed_by"))
    event_id = ls_db.claim_event(
        context.database, project.id, annotation_id=annotation_id, revision=revision, task_id=task_id,
        annotator=who.name, label=label,
    )  # fmt: skip
    if event_id is None:
        return WebhookOutcome("already recorded: Label Studio sent this annotation again")

    def finish(outcome: str, decision_id: int | None = None) -> WebhookOutcome:
        ls_db.finish_event(context.database, event_id, decision_id, outcome)
        return WebhookOutcome(outcome, decision_id)

    if label is None:
        return finish("no decision: the annotation was cancelled or chose no class")
    image_id = _image_of_task(context, token, project, task_id)
    if image_id is None:
        return finish(f"no decision: task {task_id}'s image could not be imported (see Admin → Dataset)")
    try:
        row = review.decide_class(
            context, who, image_id, label, expected_last_id=last_decision_id(context.database, image_id),
            purpose=PURPOSE,
        )  # fmt: skip
    except LoupeError as refused:
        return finish(f"no decision: {refused.message}")
    return finish(f"{row.action} of image {image_id} as {label!r}", row.id)


def _image_of_task(context: Context, token, project, task_id: int) -> int | None:
    """The Loupe image of a task: linked at predict time, else read from Label Studio and imported now."""
    linked = ls_db.linked_images(context.database, project.id, [task_id])
    if task_id in linked:
        return linked[task_id][0]
    task = _read_json(context, token, project, f"/api/tasks/{quote(str(task_id))}")
    task.setdefault("id", task_id)
    items = _task_images(context, token, project, [task])
    return items[0].image_id if items else None


# --- Admin -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connections:
    """What Admin → Label Studio shows: tokens, connected projects, recent annotation events."""

    tokens: list[ls_db.TokenRow]
    projects: list[tuple[ls_db.ProjectRow, int, int]]
    events: list[ls_db.EventRow]


def connections(context: Context, user: user_db.UserRow | None) -> Connections:
    """Tokens, projects and recent annotation events (admins)."""
    review.require_role(user, review.ADMIN)
    database = context.database
    return Connections(ls_db.list_tokens(database), ls_db.list_projects(database), ls_db.recent_events(database))
