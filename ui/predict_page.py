"""The public page at /: Predict (no login)."""

from __future__ import annotations

import gradio as gr

from context import Context

NO_MODEL_YET = (
    "**No model has been trained yet.** Once an admin trains and promotes one, upload an image here to see what it is."
)


def build_predict_page(context: Context) -> gr.Blocks:
    """The public Blocks; the predictor arrives with the training issue."""
    with gr.Blocks(title="Loupe — Predict") as page:
        gr.Markdown("# Loupe\nHuman-in-the-loop image labeling. Experts and admins: [log in to review](/review/).")
        with gr.Tab("Predict"):
            gr.Markdown(NO_MODEL_YET, elem_id="predict-status")
    return page
