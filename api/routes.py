"""REST routes. Each one calls named functions in db/, labeling/ or models/."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from context import Context
from db.stats import dataset_stats


def build_router(context: Context) -> APIRouter:
    """The /api routes bound to this Loupe instance."""
    router = APIRouter(prefix="/api")

    @router.get("/health", summary="Service status and dataset counts")
    async def health() -> dict:
        stats = await run_in_threadpool(dataset_stats, context.database)
        return {"status": "ok", "model_version": None, "counts": asdict(stats)}

    return router
