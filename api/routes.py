"""Public REST routes. Each calls named functions below the edge; refusals are answered by api/refusals.py."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from context import Context
from db.stats import dataset_stats
from labeling.imports.safe_fetch import fetch_image_url
from limits import RequestRate
from models.imagecheck import ImageRejected, RejectReason
from models.predictor import NoModelYet, Prediction
from models.serving import Serving
from ui.predict_status import answering_sentence, no_model_sentence


class PredictionOut(BaseModel):
    """What /api/predict and /api/classify-url answer."""

    model_version: str
    predictions: list[tuple[str, float]]


def _answer(prediction: Prediction) -> PredictionOut:
    return PredictionOut(model_version=prediction.model_version, predictions=prediction.predictions)


async def _read_capped(upload: UploadFile, max_bytes: int) -> bytes:
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageRejected(RejectReason.TOO_LARGE, f"the upload is over the limit of {max_bytes:,} bytes")
    return data


def build_router(context: Context, serving: Serving, predict_rate: RequestRate) -> APIRouter:
    """The /api routes bound to this Loupe instance."""
    router = APIRouter(prefix="/api")
    settings = context.settings

    def limit_rate(request: Request) -> None:
        predict_rate.take(request.client.host if request.client else None)

    @router.get("/health", summary="Service status, the model answering (or where the first one stands), counts")
    async def health() -> dict:
        version = serving.predictor.version
        stats = await run_in_threadpool(dataset_stats, context.database)
        sentence = await run_in_threadpool(answering_sentence, version, context)
        return {"status": "ok", "model_version": version, "answering": sentence, "counts": asdict(stats)}

    @router.post(
        "/predict",
        response_model=PredictionOut,
        summary="Classify an uploaded image (multipart field `file`)",
        responses={
            400: {"description": "not an image"},
            409: {"description": "no model yet; the detail says whether the first one is training, and its ETA"},
            413: {},
            429: {"description": "too many requests from this address"},
        },
        dependencies=[Depends(limit_rate)],
    )
    async def predict(file: UploadFile = File(...)) -> PredictionOut:
        data = await _read_capped(file, settings.max_image_bytes)

        def predict_or_say_why_not() -> Prediction:
            try:
                return serving.predict_bytes(data)
            except NoModelYet:  # the same sentence as the Predict page: training, queued, or what is missing
                raise NoModelYet(no_model_sentence(context)) from None

        return _answer(await run_in_threadpool(predict_or_say_why_not))

    @router.get(
        "/classify-url",
        response_model=PredictionOut,
        summary="Fetch an image by http(s) URL and classify it",
        responses={
            400: {"description": "bad URL or not an image"},
            409: {"description": "no model yet"},
            413: {},
            429: {"description": "too many requests from this address"},
        },
        dependencies=[Depends(limit_rate)],
    )
    async def classify_url(url: str = Query(..., max_length=2048)) -> PredictionOut:
        def fetch_and_predict() -> Prediction:
            if serving.predictor.version is None:
                raise NoModelYet()
            data = fetch_image_url(
                url,
                timeout_s=settings.url_timeout_s,
                max_bytes=settings.max_image_bytes,
                allow_private=settings.allow_private_urls,
            )
            return serving.predict_bytes(data)

        return _answer(await run_in_threadpool(fetch_and_predict))

    return router
