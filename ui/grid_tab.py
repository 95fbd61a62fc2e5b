"""The Grid tab, in the spirit of the lesson's FileDeleter: a page of the worst items, each with its
own action, applied together. Conflicts with other experts are caught by the same stale check."""

from __future__ import annotations

import gradio as gr

from context import Context
from db import decisions as decision_db
from db.embeddings import score_of
from db.queue import QueueFilters, queue_page
from labeling.imagecheck import ImageRejected
from labeling.labels import clean_label
from labeling.scoring import scorer_name
from ui.auth import require_role_in_handler
from ui.markdown import html_text, md_text

SLOTS = 12
SKIP, KEEP, DELETE, RELABEL = "skip", "keep", "delete", "relabel to prediction"


def caption(item) -> str:
    """The label, the prediction and the score under a thumbnail."""
    return f"**{md_text(item.label)}** → model: **{md_text(item.predicted_label)}** · score {item.score:.2f}"


def make_handlers(context: Context):
    """The Grid tab's handlers, bound to this Loupe instance."""
    database = context.database

    def load_page(request: gr.Request):
        require_role_in_handler(context, request, "expert")
        page = queue_page(database, scorer_name(), QueueFilters(reviewed=False), limit=SLOTS)
        shown = [
            {"image_id": i.image_id, "last_decision_id": i.last_decision_id, "predicted": i.predicted_label}
            for i in page.items
        ]
        updates = []
        for slot in range(SLOTS):
            if slot < len(page.items):
                item = page.items[slot]
                updates += [
                    gr.Image(value=str(context.store.absolute(item.stored_path)), visible=True),
                    gr.Markdown(caption(item), visible=True),
                    gr.Radio(value=SKIP, visible=True),
                ]
            else:
                updates += [gr.Image(value=None, visible=False), gr.Markdown(visible=False), gr.Radio(visible=False)]
        summary = f"The {len(page.items)} likeliest wrong labels of {page.unreviewed} unreviewed."
        return shown, summary, *updates

    def apply(request: gr.Request, shown: list[dict] | None, *choices):  # request first: Gradio injects it only there
        user = require_role_in_handler(context, request, "expert")
        recorded, refused = 0, []
        for item, choice in zip(shown or [], choices, strict=False):
            if choice in (None, SKIP):
                continue
            action = {KEEP: "keep", DELETE: "delete", RELABEL: "relabel"}[choice]
            try:
                # The prediction is a class the model learned; an old database may hold one the label rule refuses.
                new_label = clean_label(item["predicted"]) if action == "relabel" else None
                decision_db.decide(
                    database,
                    item["image_id"],
                    user.id,
                    action,
                    expected_last_id=item["last_decision_id"],
                    new_label=new_label,
                    model_version=scorer_name(),
                    score=score_of(database, scorer_name(), item["image_id"]),
                )
                recorded += 1
            except decision_db.StaleDecision as stale:
                refused.append(str(stale))
            except ImageRejected as bad_label:
                refused.append(f"image {item['image_id']}: {bad_label.detail}")
        if refused:
            gr.Warning(html_text(f"{len(refused)} not saved: {'; '.join(refused)}"))
        gr.Info(f"{recorded} decisions saved.")

    return load_page, apply


def build_grid_tab(context: Context) -> None:
    """The Grid tab's components and wiring; call inside a gr.Blocks."""
    load_page, apply = make_handlers(context)
    with gr.Tab("Grid", id="grid") as tab:
        shown = gr.State([])
        summary = gr.Markdown(elem_id="grid-summary")
        slots = []
        for row_start in range(0, SLOTS, 4):
            with gr.Row():
                for slot in range(row_start, row_start + 4):
                    with gr.Column(min_width=160):
                        image = gr.Image(show_label=False, interactive=False, height=160, visible=False)
                        text = gr.Markdown(visible=False, elem_id=f"grid-caption-{slot}")
                        choice = gr.Radio(
                            [SKIP, KEEP, DELETE, RELABEL],
                            value=SKIP,
                            show_label=False,
                            visible=False,
                            elem_id=f"grid-choice-{slot}",
                        )
                        slots.append((image, text, choice))
        with gr.Row():
            apply_button = gr.Button("Apply these decisions", variant="primary", elem_id="grid-apply")
            reload_button = gr.Button("Next page", elem_id="grid-reload")
    outputs = [shown, summary, *[component for slot in slots for component in slot]]
    show = {"fn": load_page, "outputs": outputs, "api_visibility": "private"}
    tab.select(**show)
    reload_button.click(**show)
    apply_button.click(apply, inputs=[shown, *[choice for *_, choice in slots]], api_visibility="private").then(**show)
