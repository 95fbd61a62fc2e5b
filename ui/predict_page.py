"""The public page at /: Predict (no login). Until a model answers, it says where the first model stands."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import gradio as gr

from context import Context
from limits import RequestRate
from models.predictor import NoModelYet
from models.serving import Serving
from training.scheduler import FIRST_MODEL_CLASSES, FIRST_MODEL_PER_CLASS, FirstModelStatus, first_model_status
from ui.markdown import md_text
from ui.readable import duration, when_text
from ui.refusals import shows_refusals

NO_MODEL_YET = (
    "No model has been trained yet. Once an admin trains and promotes one, upload an image here to see what it is."
)
TOP_CLASSES = 5
STATUS_REFRESH_S = 2.0  # how often an open page re-reads the first model's progress while no model answers
PHASES = {
    "frozen": "training the head",
    "unfrozen": "fine-tuning the whole network",
    "lr_find": "finding a learning rate",
}


class EtaClock:
    """Seconds left in a run, from the pace this process has seen it train at.

    The run's own elapsed time starts before loading the images and building the network (40 s of 60 on
    the demo, on a CPU) and that does not recur, so elapsed / fraction would promise hours at the first
    batch. Measured from the first step seen here, elapsed / fraction-done-since is the training's pace;
    between two progress writes the estimate counts down from the last one instead of growing.
    """

    def __init__(self, keep: int = 8):
        self.keep = keep
        # run id -> (first seen: monotonic time, fraction; last change: monotonic time, fraction)
        self._seen: dict[int, tuple[float, float, float, float]] = {}
        self._lock = threading.Lock()

    def eta_s(self, run_id: int, fraction: float | None, now: float | None = None) -> float | None:
        """Seconds left, or None before a second measurable step (then the page says it is estimating)."""
        if fraction is None or fraction >= 1:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            first_time, first_fraction, last_time, last_fraction = self._seen.get(
                run_id, (now, fraction, now, fraction)
            )
            if fraction > last_fraction:
                last_time, last_fraction = now, fraction
            self._seen[run_id] = (first_time, first_fraction, last_time, last_fraction)
            while len(self._seen) > self.keep:
                self._seen.pop(next(iter(self._seen)))
        if last_fraction <= first_fraction or last_time <= first_time:
            return None
        pace = (last_time - first_time) / (last_fraction - first_fraction)  # seconds per whole run
        return max(pace * (1 - last_fraction) - (now - last_time), 1.0)


ETA = EtaClock()


def no_model_sentence(context: Context) -> str:
    """Where the first model stands, in one plain sentence: the Predict page's status and /api/predict's 409."""
    return status_sentence(first_model_status(context))


def status_sentence(status: FirstModelStatus, clock: EtaClock = ETA) -> str:
    """The sentence for a first-model status (training with its ETA, queued, failed, waiting for data)."""
    run = status.run
    if status.state == "training" and run is not None:
        elapsed = f"elapsed {duration(run.seconds)}"
        if status.fraction is not None and status.fraction >= 1:
            return f"The first model is trained; it is being checked and saved ({elapsed}) and answers within seconds."
        progress = run.progress or {}
        phase = PHASES.get(progress.get("phase"))
        if phase is None:
            return f"The first model is training: loading the images, estimating the time left… ({elapsed})."
        total = int(run.params.get("freeze_epochs", 0)) + int(run.params.get("epochs", 0))
        offset = int(run.params.get("freeze_epochs", 0)) if progress.get("phase") == "unfrozen" else 0
        epoch = (
            f", epoch {offset + int(progress.get('epoch', 1))} of {total}" if progress.get("phase") != "lr_find" else ""
        )
        eta = clock.eta_s(run.id, status.fraction)
        left = f"about {duration(eta)} left" if eta is not None else "estimating the time left…"
        return f"The first model is training: {phase}{epoch}, {left} ({elapsed})."
    if status.state == "loading":
        return "The first model is trained; it answers within seconds."
    if status.state == "queued":
        return f"The first model is queued for training (queued {when_text(run.created_at) if run else 'just now'})."
    if status.state == "failed":
        return (
            f"No model has been trained yet: {status.reason}. "
            "The first model is tried again once images or decisions change, or an admin retrains."
        )
    if status.state == "waiting" and status.reason.startswith("the first model needs"):
        return f"No model has been trained yet: {status.reason}; it trains by itself as soon as it has them."
    if status.state == "waiting":
        return (
            f"No model has been trained yet: {status.reason}. The first model trains by itself once "
            f"{FIRST_MODEL_CLASSES} classes have {FIRST_MODEL_PER_CLASS} labeled images each."
        )
    return NO_MODEL_YET


def status_markdown(serving: Serving) -> str:
    """Which model answers, or where the first model stands."""
    version = serving.predictor.version
    if version:
        return f"Model version **{md_text(version)}** answers."
    return md_text(no_model_sentence(serving.context))


def refresh_status(serving: Serving) -> tuple[str, gr.Timer]:
    """The status, and the page's timer on while no model answers (off once one does: nothing left to follow)."""
    return status_markdown(serving), gr.Timer(active=serving.predictor.version is None)


def raw_image_input(**options) -> gr.Image:
    """An Image input that hands the handler the uploaded file's path, undecoded.

    gr.Image converts an upload (every frame of a GIF) before the handler runs: a 7 KB, 300-frame GIF
    cost 25 s and 1.2 GB there. With this, Loupe's own checked decode runs first (byte and pixel limits,
    the first frame only). ui/mounts.py has already refused any path that is not an upload here.
    (Set on the instance: a subclass would make Gradio write a .pyi stub beside this module.)
    """
    image = gr.Image(type="filepath", **options)
    image.preprocess = lambda payload: None if payload is None else payload.path
    return image


def make_predict_handler(serving: Serving, predict_rate: RequestRate):
    """The handler behind the Predict button, bound to the serving predictor."""

    def predict(request: gr.Request, image_path: str | None):  # request first: Gradio injects it only there
        predict_rate.take(request.client.host if request and request.client else None)
        if not image_path:
            raise gr.Error("Upload or paste an image first.")
        try:
            prediction = serving.predict_bytes(Path(image_path).read_bytes(), top=TOP_CLASSES)
        except NoModelYet:
            raise NoModelYet(no_model_sentence(serving.context)) from None
        return dict(prediction.predictions), f"Answered by model version **{prediction.model_version}**."

    return shows_refusals(predict)


def build_predict_page(serving: Serving, predict_rate: RequestRate, concurrency: int) -> gr.Blocks:
    """The public Blocks: an image in, the top classes with probabilities out."""
    predict = make_predict_handler(serving, predict_rate)
    with gr.Blocks(title="Loupe — Predict") as page:
        gr.Markdown("# Loupe\nHuman-in-the-loop image labeling. Experts and admins: [log in to review](/review/).")
        with gr.Tab("Predict"):
            status = gr.Markdown(elem_id="predict-status")
            timer = gr.Timer(STATUS_REFRESH_S, active=False)
            with gr.Row():
                image = raw_image_input(sources=["upload", "clipboard"], label="Image", elem_id="predict-image")
                with gr.Column():
                    labels = gr.Label(num_top_classes=TOP_CLASSES, label="Prediction", elem_id="predict-label")
                    answered_by = gr.Markdown(elem_id="predict-version")
            button = gr.Button("Predict", variant="primary", elem_id="predict-button")
        # A cap on events decoding at once: the rest wait in the queue (which sleeps, ui/quiet_queue.py).
        button.click(
            predict, inputs=image, outputs=[labels, answered_by], api_name="predict", concurrency_limit=concurrency
        )
        # While no model answers, an open page follows the first model's training; the tick is public, so it
        # reads little (serving's own reference first, then a row or two) and is not part of the API.
        page.load(lambda: refresh_status(serving), outputs=[status, timer], api_visibility="private")
        timer.tick(
            lambda: refresh_status(serving), outputs=[status, timer], api_visibility="private", show_progress="hidden"
        )
    return page
