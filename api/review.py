"""The review API for scripts: the queue and decisions, for experts and admins (HTTP Basic).

The Review tab uses the same functions, so the UI and scripts follow the same rules.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field

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


class DecisionIn(BaseModel):
    """One expert action on one image."""

    image_id: int = 0
    action: Literal["keep", "relabel", "delete", "restore", "undo"]
    new_label: str | None = Field(default=None, max_length=100)
    expected_last_decision_id: int | None = Field(
        default=None, description="the image's last_decision_id as the queue showed it; a mismatch is refused (409)"
    )


def build_review_router(context: Context, logins: LoginThrottle) -> APIRouter:
    """/api/queue and /api/decisions, bound to this Loupe instance."""
    router = APIRouter(prefix="/api", tags=["review"])
    database = context.database

    def expert(request: Request, credentials: HTTPBasicCredentials = Depends(basic)) -> UserRow:
        address = request.client.host if request.client else None
        try:
            logins.check(credentials.username, address)
        except RateLimited as limited:
            raise HTTPException(429, str(limited), headers={"Retry-After": str(limited.retry_after_s)}) from None
        user = authenticate(database, credentials.username, credentials.password)
        if user is None:
            logins.failed(credentials.username, address)
            raise HTTPException(401, "wrong user name or password", headers={"WWW-Authenticate": "Basic"})
        logins.succeeded(user.name)
        if user.role not in ("expert", "admin"):
            raise HTTPException(403, "this needs the expert or admin role")
        return user

    def filters(
        label: str | None = None,
        predicted: str | None = None,
        split: Literal["train", "valid"] | None = None,
        reviewed: bool | None = None,
        unlabeled: bool = False,
    ) -> QueueFilters:
        return QueueFilters(label, predicted, split, reviewed, unlabeled)

    @router.get("/queue", summary="Queue items in review order, most likely wrong label first")
    async def get_queue(
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0),
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
