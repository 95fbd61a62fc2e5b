"""The Duplicates tab: near-duplicate pairs side by side; the expert keeps one, both or neither."""

from __future__ import annotations

import gradio as gr

from context import Context
from db import decisions as decision_db
from db import duplicates as duplicate_db
from db.images import get_image
from labeling.duplicates import resolve_pair
from ui.auth import require_role_in_handler
from ui.markdown import md_text

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

    def show_pair(request: gr.Request):
        require_role_in_handler(context, request, "expert")
        pending = duplicate_db.pending_pairs(database, limit=1)
        if not pending:
            empty = gr.Image(value=None)
            message = "No near-duplicate pairs are waiting (admins find them with `server.py find-duplicates`)."
            return None, message, empty, "", empty, "", gr.Row(visible=False)
        pair = pending[0]
        first, second = get_image(database, pair.first_id), get_image(database, pair.second_id)
        summary = (
            f"Pair {pair.id}: similarity **{pair.similarity:.3f}** of embeddings; "
            f"{duplicate_db.count_pending(database)} pair(s) waiting."
        )
        return (
            pair.id,
            summary,
            str(context.store.absolute(first.stored_path)),
            describe(first),
            str(context.store.absolute(second.stored_path)),
            describe(second),
            gr.Row(visible=True),
        )

    def decide(resolution: str):
        def handler(request: gr.Request, pair_id: int | None):  # request first: Gradio injects it only there
            user = require_role_in_handler(context, request, "expert")
            if pair_id is None:
                raise gr.Error("There is no pair on screen; reload the tab.")
            try:
                resolve_pair(context, int(pair_id), resolution, user.id)
            except (decision_db.StaleDecision, decision_db.DecisionError) as refused:
                gr.Warning(str(refused))
                return
            gr.Info(f"Pair {pair_id}: {CHOICES[resolution].lower()}.")

        return handler

    return show_pair, {resolution: decide(resolution) for resolution in CHOICES}


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
    show = {"fn": show_pair, "outputs": [pair_id, summary, left, left_text, right, right_text, buttons]}
    tab.select(**show, api_visibility="private")
    for resolution, button in clicks.items():
        button.click(deciders[resolution], inputs=pair_id, api_visibility="private").then(
            **show, api_visibility="private"
        )
