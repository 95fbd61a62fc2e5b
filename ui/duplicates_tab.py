"""The Duplicates tab: near-duplicate pairs side by side; the expert keeps one, both or neither."""

from __future__ import annotations

import gradio as gr

from context import Context
from db import duplicate_pairs as duplicate_db
from db.images import get_image
from labeling import review
from ui.auth import request_user, require_role_in_handler
from ui.markdown import md_text
from ui.refusals import shows_refusals
from ui.wiring import wire

CHOICES = {
    "keep_first": "Keep left (delete right)",
    "keep_second": "Keep right (delete left)",
    "keep_both": "Keep both (not duplicates)",
    "keep_neither": "Keep neither (delete both)",
}


def describe(image) -> str:
    """One side's name, label and split."""
    label = md_text(image.label) if image.label else "none"
    return f"**{md_text(image.original_name)}** · label **{label}** · {image.split} · id {image.id}"


def make_handlers(context: Context):
    """The Duplicates tab's handlers, bound to this Loupe instance."""
    database = context.database

    def show_pair(request: gr.Request) -> dict:
        require_role_in_handler(context, request, review.EXPERT)
        pending = duplicate_db.pending_pairs(database, limit=1)
        if not pending:
            empty = gr.Image(value=None)
            message = "No near-duplicate pairs are waiting (admins find them with `loupe find-duplicates`)."
            return {
                "pair_id": None,
                "summary": message,
                "left": empty,
                "left_text": "",
                "right": empty,
                "right_text": "",
                "buttons": gr.Row(visible=False),
            }
        pair = pending[0]
        first, second = get_image(database, pair.first_id), get_image(database, pair.second_id)
        summary = (
            f"Pair {pair.id}: similarity **{pair.similarity:.3f}** of embeddings; "
            f"{duplicate_db.count_pending(database)} pair(s) waiting."
        )
        return {
            "pair_id": pair.id,
            "summary": summary,
            "left": str(context.store.absolute(first.stored_path)),
            "left_text": describe(first),
            "right": str(context.store.absolute(second.stored_path)),
            "right_text": describe(second),
            "buttons": gr.Row(visible=True),
        }

    def decide(resolution: str):
        def handler(request: gr.Request, pair_id: int | None):  # request first: Gradio injects it only there
            if pair_id is None:
                raise gr.Error("There is no pair on screen; reload the tab.")
            review.resolve_pair(context, request_user(context, request), int(pair_id), resolution)
            gr.Info(f"Pair {pair_id}: {CHOICES[resolution].lower()}.")

        return shows_refusals(handler)

    return shows_refusals(show_pair), {resolution: decide(resolution) for resolution in CHOICES}


def build_duplicates_tab(context: Context) -> None:
    """The Duplicates tab's components and wiring; call inside a gr.Blocks."""
    show_pair, deciders = make_handlers(context)
    with gr.Tab("Duplicates", id="duplicates") as tab:
        pair_id = gr.State(None)
        summary = gr.Markdown(elem_id="duplicates-summary")
        with gr.Row():
            with gr.Column():
                left = gr.Image(show_label=False, interactive=False, height=300, type="filepath")
                left_text = gr.Markdown(elem_id="duplicates-left")
            with gr.Column():
                right = gr.Image(show_label=False, interactive=False, height=300, type="filepath")
                right_text = gr.Markdown(elem_id="duplicates-right")
        with gr.Row(visible=False) as buttons:
            clicks = {
                resolution: gr.Button(text, elem_id=f"duplicates-{resolution.replace('_', '-')}")
                for resolution, text in CHOICES.items()
            }
    show_fn, outputs = wire(
        show_pair,
        {
            "pair_id": pair_id,
            "summary": summary,
            "left": left,
            "left_text": left_text,
            "right": right,
            "right_text": right_text,
            "buttons": buttons,
        },
    )
    show = {"fn": show_fn, "outputs": outputs}
    tab.select(**show, api_visibility="private")
    for resolution, button in clicks.items():
        button.click(deciders[resolution], inputs=pair_id, api_visibility="private").then(
            **show, api_visibility="private"
        )
