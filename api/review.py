"""The review API for scripts: the queue and decisions, for experts and admins (HTTP Basic).

The Review tab uses the same functions, so the UI and scripts follow the same rules.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from context import Context
from db import decisions as decision_db
from db.embeddings import score_of
from db.queue import QueueFilters, lease_next, queue_page, release_leases
from db.users import UserRow, authenticate
from labeling.imagecheck import ImageRejected
from labeling.ingest import clean_label
from labeling.scoring import scorer_name
from limits import LoginThrottle, RateLimited

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


class DecisionIn(BaseModel):
    """One expert action on one image."""

    image_id: RowId | None = Field(default=None, description="the image decided; required for every action but undo")
    action: Literal["keep", "relabel", "delete", "restore", "undo"]
    new_label: str | None = Field(default=None, max_length=100)
    expected_last_decision_id: RowId | None = Field(
        default=None, description="the image's last_decision_id as the queue showed it; a mismatch is refused (409)"
    )

    @model_validator(mode="after")
    def _image_unless_undo(self) -> DecisionIn:
        # A missing image_id used to become 0; only undo (of my own last decision) names no image.
        if self.action != "undo" and self.image_id is None:
            raise PydanticCustomError("missing", "image_id is required for {action}", {"action": self.action})
        return self


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


def build_review_router(context: Context, logins: LoginThrottle) -> APIRouter:
    """/api/queue and /api/decisions, bound to this Loupe instance."""
    router = APIRouter(prefix="/api", tags=["review"], route_class=_EncodableErrors)
    database = context.database

    def expert(request: Request, credentials: HTTPBasicCredentials = Depends(basic)) -> UserRow:
        address = request.client.host if request.client else None
        try:
            logins.check(credentials.username, address)
        except RateLimited as limited:
            raise HTTPException(429, str(limited), headers={"Retry-After": str(limited.retry_after_s)}) from None
        # No account name holds NUL, and PostgreSQL refuses it in a query (a 500): a wrong login, unlooked-up.
        name_ok = "\x00" not in credentials.username
        user = authenticate(database, credentials.username, credentials.password) if name_ok else None
        if user is None:
            logins.failed(credentials.username, address)
            raise HTTPException(401, "wrong user name or password", headers={"WWW-Authenticate": "Basic"})
        logins.succeeded(user.name, address)
        if user.role not in ("expert", "admin"):
            raise HTTPException(403, "this needs the expert or admin role")
        return user

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
        _user: UserRow = Depends(expert),
    ) -> dict:
        page = await run_in_threadpool(queue_page, database, scorer_name(), chosen, limit, offset)
        return {"total": page.total, "unreviewed": page.unreviewed, "items": [asdict(i) for i in page.items]}

    @router.post("/queue/next", summary="Lease the next unreviewed item to me for a few minutes")
    async def next_item(chosen: QueueFilters = Depends(filters), user: UserRow = Depends(expert)) -> dict:
        item = await run_in_threadpool(lease_next, database, scorer_name(), user.id, chosen)
        return {"item": asdict(item) if item else None}

    @router.post("/decisions", summary="Keep, relabel, delete, restore an image, or undo my last decision")
    async def post_decision(decision: DecisionIn, user: UserRow = Depends(expert)) -> dict:
        if decision.action == "restore" and user.role != "admin":
            # Experts undo their own deletions; bringing back anyone's deleted image is the Admin tab's job.
            raise HTTPException(403, "restoring a deleted image needs the admin role (undo takes back your own delete)")

        def record() -> decision_db.DecisionRow:
            if decision.action == "undo":
                return decision_db.undo_last(database, user.id)
            row = decision_db.decide(
                database,
                decision.image_id,
                user.id,
                decision.action,
                expected_last_id=decision.expected_last_decision_id,
                new_label=clean_label(decision.new_label) if decision.new_label else None,
                model_version=scorer_name(),
                score=score_of(database, scorer_name(), decision.image_id),
            )
            release_leases(database, user.id)
            return row

        try:
            row = await run_in_threadpool(record)
        except decision_db.StaleDecision as stale:
            raise HTTPException(409, str(stale)) from None
        except decision_db.DecisionError as refused:
            raise HTTPException(400, str(refused)) from None
        except ImageRejected as bad_label:
            raise HTTPException(400, bad_label.detail) from None
        return {"decision": asdict(row)}

    return router
