"""The review API for scripts: the queue and decisions, for experts and admins (HTTP Basic).

Every rule is labeling/review.py's, which the Gradio tabs and the CLI call too; refusals are answered
by api/refusals.py. This module only authenticates, validates the shape of input, and serialises.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError
from starlette.background import BackgroundTask

from api.hooks import add_hook_routes
from context import Context
from db.queue import QueueFilters
from db.users import UserRow, authenticate
from errors import NotAuthenticated
from labeling import review
from limits import LoginThrottle
from training.archive import MAX_VERSION_CHARS, build_archive

basic = HTTPBasic(realm="Loupe review")


# Row ids are INTEGER columns: 64-bit in SQLite but 32-bit in PostgreSQL, where a larger number fails the
# query (a 500), so anything above what both can hold is refused here; no row has such an id anyway.
MAX_ROW_ID = 2**31 - 1
# The queue is never near this long; the cap keeps OFFSET within a 32-bit INTEGER on every database.
MAX_QUEUE_OFFSET = 10**9

# Strict: in lax mode pydantic turns `true` into 1 and "7" into 7, and a script sending the wrong field
# would decide some other image.
RowId = Annotated[int, Field(strict=True, ge=1, le=MAX_ROW_ID)]
MAX_LABEL_CHARS = 100  # labeling's MAX_LABEL_LENGTH
# A label filter with a control character matches no label (labels are one line of visible text), and
# PostgreSQL refuses NUL in any text parameter: the query would fail with a 500.
LABEL_TEXT = r"^[^\x00-\x1f\x7f]*$"


def _label_filter(description: str):
    """A label query parameter; a new Query for each (one shared by two parameters made `predicted` read `label`)."""
    return Query(None, max_length=MAX_LABEL_CHARS, pattern=LABEL_TEXT, description=description)


# The actions the service knows, and undo: a new action appears here (and in the OpenAPI schema) by itself.
ActionName = Literal[(*review.ACTIONS, review.UNDO)]


class DecisionIn(BaseModel):
    """One expert action on one image."""

    image_id: RowId | None = Field(default=None, description="the image decided; required for every action but undo")
    action: ActionName  # type: ignore[valid-type]
    new_label: str | None = Field(default=None, max_length=100)
    expected_last_decision_id: RowId | None = Field(
        default=None, description="the image's last_decision_id as the queue showed it; a mismatch is refused (409)"
    )
    task_id: RowId | None = Field(
        default=None,
        description="the blind check's task_id when the item came with one: answers it (keep, relabel or delete)",
    )

    @model_validator(mode="after")
    def _image_unless_undo(self) -> DecisionIn:
        # A missing image_id used to become 0; only undo (of my own last decision) names no image.
        if self.action != review.UNDO and self.image_id is None:
            raise PydanticCustomError("missing", "image_id is required for {action}", {"action": self.action})
        return self


class AuditIn(BaseModel):
    """How many unreviewed images an audit draws, and optionally the seed of the draw."""

    size: int = Field(strict=True, ge=1, le=review.MAX_AUDIT)
    seed: int | None = Field(default=None, strict=True, ge=0, le=2**32 - 1)


class SettleIn(BaseModel):
    """An admin's answer to a disagreement: the label the image shows, or null to delete it."""

    label: str | None = Field(max_length=MAX_LABEL_CHARS, pattern=LABEL_TEXT)


class GuideIn(BaseModel):
    """A class's guideline: a short definition and a few pinned example images."""

    label: str = Field(min_length=1, max_length=MAX_LABEL_CHARS, pattern=LABEL_TEXT)
    definition: str = Field(default="", max_length=review.MAX_GUIDE_CHARS)
    example_ids: list[RowId] = Field(default_factory=list, max_length=review.MAX_GUIDE_EXAMPLES)


class PolicyIn(BaseModel):
    """Which decisions go to a second expert, blind."""

    second_opinion_share: float = Field(ge=0, le=1)
    second_opinion_relabels: bool = True
    audit_second_opinion: bool = True


class _EncodableErrors(APIRoute):
    """A route whose 422 can always be written out.

    FastAPI's 422 echoes the refused input, and a JSON string may hold a lone surrogate ("\\ud800") that
    pydantic refuses but UTF-8 cannot encode, so writing the refusal failed with a 500.
    """

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request):
            try:
                return await handler(request)
            except RequestValidationError as refused:
                raise RequestValidationError(_encodable(refused.errors()), body=refused.body) from None

        return route


def _encodable(value):
    """value with every string made encodable as UTF-8 (a lone surrogate becomes its escape, \\ud800)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {key: _encodable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(item) for item in value]
    return value


class WrongLogin(NotAuthenticated):
    """HTTP Basic credentials that match no enabled account."""

    def headers(self) -> dict[str, str]:
        """Ask the client for credentials again."""
        return {"WWW-Authenticate": "Basic"}


def build_review_router(context: Context, logins: LoginThrottle) -> APIRouter:
    """/api/queue and /api/decisions, bound to this Loupe instance."""
    router = APIRouter(prefix="/api", tags=["review"], route_class=_EncodableErrors)
    database = context.database

    def logged_in(request: Request, credentials: HTTPBasicCredentials = Depends(basic)) -> UserRow:
        address = request.client.host if request.client else None
        logins.check(credentials.username, address)
        # No account name holds NUL, and PostgreSQL refuses it in a query (a 500): a wrong login, unlooked-up.
        name_ok = "\x00" not in credentials.username
        user = authenticate(database, credentials.username, credentials.password) if name_ok else None
        if user is None:
            logins.failed(credentials.username, address)
            raise WrongLogin("wrong user name or password")
        logins.succeeded(user.name, address)
        return user

    def admin(user: UserRow = Depends(logged_in)) -> UserRow:
        # The service checks again; checking here first answers an expert 403 before their body is read.
        return review.require_role(user, review.ADMIN)

    def filters(
        label: str | None = _label_filter("only images with this current label"),
        predicted: str | None = _label_filter("only images the model predicts as this label"),
        split: Literal["train", "valid"] | None = None,
        reviewed: bool | None = None,
        unlabeled: bool = False,
    ) -> QueueFilters:
        return QueueFilters(label, predicted, split, reviewed, unlabeled)

    @router.get("/queue", summary="Queue items in review order, most likely wrong label first")
    async def get_queue(
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=MAX_QUEUE_OFFSET, description=f"items to skip, at most {MAX_QUEUE_OFFSET:,}"),
        chosen: QueueFilters = Depends(filters),
        user: UserRow = Depends(logged_in),
    ) -> dict:
        page = await run_in_threadpool(review.queue_page, context, user, chosen, limit, offset)
        return {"total": page.total, "unreviewed": page.unreviewed, "items": [asdict(i) for i in page.items]}

    @router.post("/queue/next", summary="Lease the next unreviewed item to me for a few minutes")
    async def next_item(
        chosen: QueueFilters = Depends(filters),
        blind: bool = Query(
            False,
            description="mix in blind checks (audit items, second opinions): an item with a task_id shows no "
            "prediction and is answered by POST /api/decisions with that task_id",
        ),
        user: UserRow = Depends(logged_in),
    ) -> dict:
        item = await run_in_threadpool(lambda: review.next_item(context, user, chosen, blind=blind))
        return {"item": asdict(item) if item else None}

    @router.post("/decisions", summary="Keep, relabel, delete, restore an image, or undo my last decision")
    async def post_decision(decision: DecisionIn, user: UserRow = Depends(logged_in)) -> dict:
        if decision.action == review.UNDO:
            row = await run_in_threadpool(review.undo, context, user)
        elif decision.task_id is not None:
            answer = await run_in_threadpool(
                lambda: review.answer_blind(
                    context,
                    user,
                    decision.task_id,
                    decision.action,
                    expected_last_id=decision.expected_last_decision_id,
                    new_label=decision.new_label,
                )
            )
            blind = asdict(answer)
            return {"decision": blind.pop("decision"), "blind": blind}
        else:
            row = await run_in_threadpool(
                lambda: review.decide(
                    context,
                    user,
                    decision.image_id,
                    decision.action,
                    expected_last_id=decision.expected_last_decision_id,
                    new_label=decision.new_label,
                )
            )
        return {"decision": asdict(row)}

    @router.get(
        "/images/{image_id}/evidence",
        summary="Confidently-labeled look-alikes of an image: of its current class and of the predicted class",
    )
    async def get_evidence(
        image_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)], user: UserRow = Depends(logged_in)
    ) -> dict:
        found = await run_in_threadpool(review.evidence, context, user, image_id)
        return asdict(found)

    @router.get("/images/{image_id}/history", summary="Every decision and blind answer on an image, oldest first")
    async def get_history(
        image_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)], user: UserRow = Depends(logged_in)
    ) -> dict:
        return asdict(await run_in_threadpool(review.image_history, context, user, image_id))

    @router.get("/estimates", summary="How clean the labels are: queue precision, wrong labels left, agreement")
    async def get_estimates(user: UserRow = Depends(logged_in)) -> dict:
        found = await run_in_threadpool(review.dataset_estimates, context, user)
        return {"sentences": found.sentences(), **asdict(found)}

    @router.post("/audits", summary="Draw a blind audit of unreviewed images, stratified by score band (admins)")
    async def post_audit(audit: AuditIn, user: UserRow = Depends(admin)) -> dict:
        drawn = await run_in_threadpool(review.start_audit, context, user, audit.size, audit.seed)
        return asdict(drawn)

    @router.get("/disagreements", summary="Second opinions that disagree, waiting for an admin (admins)")
    async def get_disagreements(user: UserRow = Depends(admin)) -> dict:
        found = await run_in_threadpool(review.disagreements, context, user)
        return {"disagreements": [asdict(j) for j in found]}

    @router.post("/disagreements/{task_id}/settle", summary="Settle a disagreement with the label it shows (admins)")
    async def post_settle(
        task_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)], answer: SettleIn, user: UserRow = Depends(admin)
    ) -> dict:
        row = await run_in_threadpool(review.settle, context, user, task_id, answer.label)
        return {"decision": asdict(row) if row else None}

    @router.get("/guides", summary="A class's guideline: its definition and pinned examples")
    async def get_guide(
        label: str = Query(..., min_length=1, max_length=MAX_LABEL_CHARS, pattern=LABEL_TEXT),
        user: UserRow = Depends(logged_in),
    ) -> dict:
        guide = await run_in_threadpool(review.class_guide, context, user, label)
        return {"guide": asdict(guide) if guide else None}

    @router.put("/guides", summary="Write a class's guideline (admins)")
    async def put_guide(guide: GuideIn, user: UserRow = Depends(admin)) -> dict:
        saved = await run_in_threadpool(
            review.save_class_guide, context, user, guide.label, guide.definition, guide.example_ids
        )
        return {"guide": asdict(saved)}

    @router.get("/review-policy", summary="Which decisions go to a second expert, blind")
    async def get_policy(user: UserRow = Depends(logged_in)) -> dict:
        return asdict(review.load_review_policy(context))

    @router.put("/review-policy", summary="Set which decisions go to a second expert (admins)")
    async def put_policy(policy: PolicyIn, user: UserRow = Depends(admin)) -> dict:
        saved = await run_in_threadpool(
            review.save_review_policy, context, user, review.ReviewPolicy(**policy.model_dump())
        )
        return asdict(saved)

    @router.get(
        "/models/{version}/archive",
        summary="A model version as one zip: model.onnx, export.pkl, classes.json, MODEL_CARD.md (admins)",
        response_class=FileResponse,
    )
    async def get_model_archive(
        version: Annotated[str, Path(min_length=1, max_length=MAX_VERSION_CHARS, pattern=LABEL_TEXT)],
        user: UserRow = Depends(admin),
    ) -> FileResponse:
        archive = await run_in_threadpool(build_archive, context, version)
        # Built in a private temp folder; removed once the last byte is sent.
        cleanup = BackgroundTask(shutil.rmtree, archive.parent, ignore_errors=True)
        return FileResponse(archive, media_type="application/zip", filename=archive.name, background=cleanup)

    add_hook_routes(router, context, admin)  # the event hooks' routes (api/hooks.py), behind the same admin check
    return router
