"""Label Studio's ML-backend protocol under /api/label-studio: health, setup, predict, webhook.

Label Studio is given <loupe>/api/label-studio as the ML backend URL and a token (Admin → Label Studio)
as its Basic-auth password. The rules are labeling/label_studio.py's; refusals are answered by
api/refusals.py. The webhook needs no token (Label Studio's own webhook to its backend sends none), so it
is rate-limited and trusted for nothing but an annotation id.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool

from context import Context
from db.label_studio import TokenRow
from labeling import label_studio
from limits import RequestRate
from models.serving import Serving

PREFIX = "/api/label-studio"
WEBHOOK_RATE_PER_S, WEBHOOK_BURST = 20.0, 200  # per address: a burst of annotations, not a flood


def build_label_studio_router(context: Context, serving: Serving) -> APIRouter:
    """The ML-backend routes bound to this Loupe instance."""
    router = APIRouter(prefix=PREFIX, tags=["label-studio"])
    webhook_rate = RequestRate(WEBHOOK_RATE_PER_S, WEBHOOK_BURST)
    refusals = {401: {"description": "no valid Label Studio token"}}

    async def token(authorization: str | None = Header(None)) -> TokenRow:
        return await run_in_threadpool(label_studio.authenticate, context, authorization)

    @router.get("/health", summary="Label Studio's health check", responses=refusals)
    async def health(_token: TokenRow = Depends(token)) -> dict:
        return {"status": "UP", "model_class": "Loupe", "model_version": label_studio.model_version(serving)}

    @router.post("/setup", summary="Label Studio connects a project", responses=refusals)
    async def setup(body: dict[str, Any] = Body(...), connected: TokenRow = Depends(token)) -> dict:
        return await run_in_threadpool(label_studio.setup, context, serving, connected, body)

    @router.post(
        "/predict",
        summary="Predictions for Label Studio tasks; score = how likely the task's label is wrong",
        responses={**refusals, 409: {"description": "no model yet, or the project was not set up"}},
    )
    async def predict(body: dict[str, Any] = Body(...), connected: TokenRow = Depends(token)) -> dict:
        return await run_in_threadpool(label_studio.predict, context, serving, connected, body)

    @router.post(
        "/webhook",
        summary="Label Studio's annotation events; each annotation is read back from Label Studio",
        responses={404: {"description": "the project is not connected"}, 429: {}},
    )
    async def webhook(request: Request, body: dict[str, Any] = Body(...)) -> dict:
        webhook_rate.take(request.client.host if request.client else None)
        done = await run_in_threadpool(label_studio.on_webhook, context, body)
        return {"outcome": done.outcome, "decision_id": done.decision_id}

    return router
