"""The Grid tab, in the spirit of the lesson's FileDeleter: a page of the worst items, each with its
own action, applied together. Conflicts with other experts are caught by the same stale check.
A click on a picture shows that image's history below the page (ui/history.py)."""

from __future__ import annotations

import gradio as gr

from context import Context
from db.queue import QueueFilters
from labeling import review
from ui.auth import request_user
from ui.history import build_history_box, empty_history, shown_history
from ui.markdown import html_text, md_text
from ui.refusals import shows_refusals
from ui.wiring import wire

SLOTS = 12
SKIP, KEEP, DELETE, RELABEL = "skip", "keep", "delete", "relabel to prediction"
ACTION_OF = {KEEP: "keep", DELETE: "delete", RELABEL: "relabel"}
PICK_HISTORY = "Click a picture to see its history."


def caption(item) -> str:
    """The label, the prediction and the score under a thumbnail."""
    return f"**{md_text(item.label)}** → model: **{md_text(item.predicted_label)}** · score {item.score:.2f}"


def make_handlers(context: Context):
    """The Grid tab's handlers, bound to this Loupe instance; each returns {output name: value}."""

    def load_page(request: gr.Request) -> dict:
        user = request_user(context, request)
        page = review.queue_page(context, user, QueueFilters(reviewed=False), limit=SLOTS)
        shown = {
            "shown": [
                {"image_id": i.image_id, "last_decision_id": i.last_decision_id, "predicted": i.predicted_label}
                for i in page.items
            ],
            "summary": f"The {len(page.items)} likeliest wrong labels of {page.unreviewed} unreviewed.",
            **empty_history(PICK_HISTORY),  # the page changed: a history shown before may be of an image gone
        }
        for slot in range(SLOTS):
            if slot < len(page.items):
                item = page.items[slot]
                shown[f"image_{slot}"] = gr.Image(value=str(context.store.absolute(item.stored_path)), visible=True)
                shown[f"caption_{slot}"] = gr.Markdown(caption(item), visible=True)
                shown[f"choice_{slot}"] = gr.Radio(value=SKIP, visible=True)
            else:
                shown[f"image_{slot}"] = gr.Image(value=None, visible=False)
                shown[f"caption_{slot}"] = gr.Markdown(visible=False)
                shown[f"choice_{slot}"] = gr.Radio(visible=False)
        return shown

    def apply(
        request: gr.Request, shown: list[dict] | None, *choices
    ) -> None:  # request first: Gradio injects it only there
        choices = [
            review.Choice(
                item["image_id"],
                ACTION_OF[choice],
                item["last_decision_id"],
                item["predicted"] if ACTION_OF[choice] == "relabel" else None,
            )
            for item, choice in zip(shown or [], choices, strict=False)
            if choice not in (None, SKIP)
        ]
        result = review.decide_many(context, request_user(context, request), choices)
        if result.refused:
            gr.Warning(html_text(f"{len(result.refused)} not saved: {'; '.join(result.refused)}"))
        gr.Info(f"{len(result.recorded)} decisions saved.")

    def slot_history(number: int):
        """The handler showing the history of the image in slot number of the page shown."""

        def show_history(shown: list[dict] | None, request: gr.Request) -> dict:
            items = shown or []
            image_id = items[number]["image_id"] if number < len(items) else None
            return shown_history(context, request_user(context, request), image_id, PICK_HISTORY)

        return shows_refusals(show_history)

    return shows_refusals(load_page), shows_refusals(apply), slot_history


def build_grid_tab(context: Context) -> None:
    """The Grid tab's components and wiring; call inside a gr.Blocks."""
    load_page, apply, slot_history = make_handlers(context)
    with gr.Tab("Grid", id="grid") as tab:
        shown = gr.State([])
        summary = gr.Markdown(elem_id="grid-summary")
        slots = []
        for row_start in range(0, SLOTS, 4):
            with gr.Row():
                for number in range(row_start, row_start + 4):
                    with gr.Column(min_width=160):
                        image = gr.Image(
                            show_label=False,
                            interactive=False,
                            height=160,
                            visible=False,
                            elem_id=f"grid-image-{number}",
                        )
                        text = gr.Markdown(visible=False, elem_id=f"grid-caption-{number}")
                        choice = gr.Radio(
                            [SKIP, KEEP, DELETE, RELABEL],
                            value=SKIP,
                            show_label=False,
                            visible=False,
                            elem_id=f"grid-choice-{number}",
                        )
                        slots.append((image, text, choice))
        with gr.Row():
            apply_button = gr.Button("Apply these decisions", variant="primary", elem_id="grid-apply")
            reload_button = gr.Button("Next page", elem_id="grid-reload")
        history = build_history_box("History of the picture clicked", "grid-history", PICK_HISTORY)
    named = {"shown": shown, "summary": summary, **history.outputs}
    for number, (image, text, choice) in enumerate(slots):
        named |= {f"image_{number}": image, f"caption_{number}": text, f"choice_{number}": choice}
    show_fn, outputs = wire(load_page, named)
    show = {"fn": show_fn, "outputs": outputs, "api_visibility": "private"}
    tab.select(**show)
    reload_button.click(**show)
    apply_button.click(apply, inputs=[shown, *[choice for *_, choice in slots]], api_visibility="private").then(**show)
    for number, (image, *_) in enumerate(slots):
        history_fn, history_outputs = wire(slot_history(number), history.outputs)
        image.select(history_fn, inputs=[shown], outputs=history_outputs, api_visibility="private")
