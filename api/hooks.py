"""The event hooks' REST routes (admins, HTTP Basic): list, register, remove, and the recent deliveries.

Every rule is training/hooks.py's, which Admin → Hooks and `loupe hooks` call too; refusals are answered
by api/refusals.py. The routes join api/review.py's router, so they share its login and its 422 handling.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from context import Context
from db.users import UserRow
from training import hooks

EventName = Literal[hooks.EVENTS]  # type: ignore[valid-type]
MAX_HOOK_ID = 2**31 - 1  # an INTEGER id on every database (api/review.py's MAX_ROW_ID)


class HookIn(BaseModel):
    """A URL to receive events, the events it wants (all when omitted), and whether inside addresses are allowed."""

    url: str = Field(min_length=1, max_length=hooks.MAX_URL_CHARS)
    events: list[EventName] | None = Field(default=None, min_length=1, max_length=len(hooks.EVENTS))  # type: ignore[valid-type]
    allow_private: bool = Field(
        default=False,
        strict=True,
        description="send to loopback or private addresses too (a receiver on this machine or network)",
    )


def add_hook_routes(router: APIRouter, context: Context, admin) -> None:
    """Add /api/hooks… to router; admin is its dependency answering the logged-in admin."""

    @router.get("/hooks", summary="The registered event hooks, without their secrets (admins)")
    async def get_hooks(user: UserRow = Depends(admin)) -> dict:
        found = await run_in_threadpool(hooks.list_hooks, context, user)
        return {"hooks": [asdict(hook) for hook in found]}

    @router.post("/hooks", summary="Register a URL for signed event POSTs; the secret is in this answer only (admins)")
    async def post_hook(hook: HookIn, user: UserRow = Depends(admin)) -> dict:
        added = await run_in_threadpool(
            lambda: hooks.add_hook(context, user, hook.url, hook.events, allow_private=hook.allow_private)
        )
        return {"hook": asdict(added.hook), "secret": added.secret}

    @router.delete("/hooks/{hook_id}", summary="Remove an event hook; its pending deliveries are not sent (admins)")
    async def delete_hook(hook_id: Annotated[int, Path(ge=1, le=MAX_HOOK_ID)], user: UserRow = Depends(admin)) -> dict:
        removed = await run_in_threadpool(hooks.remove_hook, context, user, hook_id)
        return {"hook": asdict(removed)}

    @router.get("/hooks/deliveries", summary="The newest hook deliveries and how each went (admins)")
    async def get_deliveries(limit: int = Query(50, ge=1, le=500), user: UserRow = Depends(admin)) -> dict:
        found = await run_in_threadpool(hooks.recent_deliveries, context, user, limit)
        return {"deliveries": [asdict(delivery) for delivery in found]}
