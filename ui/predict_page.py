"""The public page at /: Predict (no login). Until a model answers, it says where the first model stands."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from limits import RequestRate
from models.predictor import NoModelYet
from models.serving import Serving
from ui.markdown import md_text
from ui.predict_status import STATUS_REFRESH_S, TOP_CLASSES, no_model_sentence
from ui.refusals import shows_refusals


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
