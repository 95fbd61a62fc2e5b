"""Loupe's web app: FastAPI routes and the Gradio pages, assembled. The command line is cli.py (`loupe --help`).

`python server.py …` still runs the command line, as before there was a console script.
"""

from __future__ import annotations

import os
import sys

# Gradio looks up its analytics hosts in the background unless told not to; Loupe runs offline.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from context import Context  # noqa: E402


def build_app(context: Context):
    """The FastAPI app: REST routes first, then /review (login), then the public page at /.

    api/guard.py's middleware stands in front of all of them; ui/mounts.py mounts the Gradio pages
    with Loupe's rules for Gradio's own routes (see the README's threat model).
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from api.guard import RequestGuard
    from api.label_studio import build_label_studio_router
    from api.refusals import install_refusal_handler
    from api.review import build_review_router
    from api.routes import build_router
    from limits import LoginThrottle, RequestRate
    from models.serving import Serving
    from training.scheduler import LoopScheduler
    from ui.auth import make_login_check
    from ui.mounts import PageMount, Sweeper, WebDoors, mount_page
    from ui.predict_page import build_predict_page
    from ui.readable import READABLE_SCRIPT
    from ui.review_page import build_review_page
    from ui.review_tab import REVIEW_CSS, SHORTCUT_SCRIPT

    serving = Serving(context, threads=context.settings.predict_threads)
    settings = context.settings
    logins = LoginThrottle(
        settings.login_failures_per_user, settings.login_failures_per_address, settings.login_window_s
    )
    predict_rate = RequestRate(settings.predict_rate_per_s, settings.predict_burst)
    upload_rate = RequestRate(settings.upload_rate_per_s, settings.upload_burst)
    loop = LoopScheduler(context, settings.scheduler_tick_s, settings.retrain_check_s) if settings.scheduler else None
    review_blocks, admin_tab = build_review_page(context, loop)
    review = PageMount("/review", review_blocks)
    public = PageMount("", build_predict_page(serving, predict_rate, settings.predict_concurrency))
    doors = WebDoors(context, [review, public], upload_rate)
    sweeper = Sweeper(doors, interval_s=60)

    @asynccontextmanager
    async def lifespan(_app):
        serving.start()
        sweeper.start()
        if loop:
            loop.start()
        yield
        if loop:
            loop.stop()
        sweeper.stop()
        serving.stop()

    app = FastAPI(title="Loupe", description="Human-in-the-loop image labeling and retraining.", lifespan=lifespan)
    app.state.serving = serving
    app.state.loop = loop
    app.state.doors = doors
    install_refusal_handler(app)
    app.include_router(build_router(context, serving, predict_rate))
    app.include_router(build_review_router(context, logins))
    app.include_router(build_label_studio_router(context, serving))
    app.add_middleware(RequestGuard, doors=doors)
    app = mount_page(
        app,
        review,
        context,
        auth=make_login_check(context, logins),
        admin_root=admin_tab,
        head=SHORTCUT_SCRIPT + READABLE_SCRIPT,
        css=REVIEW_CSS,
    )
    return mount_page(app, public, context)


def build_predict_app(context: Context):
    """Only the public surface: a Predict page, /api/predict, /api/classify-url and /api/health.

    It follows promotions like the full app, predicts with ONNX Runtime only (a version without an ONNX
    model is skipped), and never imports torch, fastai, scikit-learn, Gradio or the review pages: a process
    of it is cheap to run many of (README: "Serving predictions apart"). Its Predict page is static HTML
    over the API (ui/plain_predict_page.py), as Gradio alone would double the process.
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from api.guard import ApiDoors, RequestGuard
    from api.refusals import install_refusal_handler
    from api.routes import build_router
    from limits import RequestRate
    from models.serving import Serving
    from ui.plain_predict_page import build_plain_predict_router

    settings = context.settings
    serving = Serving(context, threads=settings.predict_threads, onnx_only=True)
    predict_rate = RequestRate(settings.predict_rate_per_s, settings.predict_burst)

    @asynccontextmanager
    async def lifespan(_app):
        serving.start()
        yield
        serving.stop()

    app = FastAPI(title="Loupe predictions", description="Loupe's public predictor.", lifespan=lifespan)
    app.state.serving = serving
    install_refusal_handler(app)
    app.include_router(build_router(context, serving, predict_rate))
    app.include_router(build_plain_predict_router())
    app.add_middleware(RequestGuard, doors=ApiDoors(settings))
    return app


def predict_app_from_env():
    """build_predict_app on the settings in the environment: what each of `serve --predict-only
    --workers N`'s processes runs (uvicorn starts them by this name)."""
    from settings import Settings

    return build_predict_app(Context.open(Settings.from_env(), upgrade=False))


if __name__ == "__main__":
    from cli import main

    sys.exit(main())
