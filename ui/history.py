"""An image's history, the same on every tab that shows one (Review, Grid, Map): every decision and blind
answer on it, oldest first, as a table, from labeling/review.py image_history.

The tabs own the hook (the shown image, a picture clicked on the grid, a point clicked on the map); this
module owns the table, its heading and the box that holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from context import Context
from db.users import UserRow
from labeling import review
from ui.markdown import md_text
from ui.readable import column_types, count, when

HISTORY_COLUMNS = ["when", "who", "what", "label before", "label after", "model version", "score"]
# The names of the outputs a history box fills; a tab's handler returns them with shown_history().
TITLE, TABLE = "history_title", "history_table"


def frame_of(history: review.ImageHistory) -> pd.DataFrame:
    """The history's entries as a table, oldest first (times through ui/readable.py, like other tables)."""
    rows = [
        [
            when(entry.at),
            entry.user_name or "",
            entry.what,
            entry.old_label or "",
            entry.new_label or "",
            entry.model_version or "",
            f"{entry.score:.2f}" if entry.score is not None else "",
        ]
        for entry in history.entries
    ]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def history_frame(context: Context, user: UserRow | None, image_id: int) -> pd.DataFrame:
    """Every decision and blind answer on the image as a table (experts; refusals come from the service)."""
    return frame_of(review.image_history(context, user, image_id))


def history_title(history: review.ImageHistory) -> str:
    """One line naming the image, its label and status now, and how many entries follow."""
    label = f"**{md_text(history.label)}**" if history.label is not None else "no label"
    entries = len(history.entries)
    listed = f"{count(entries)} {'entry' if entries == 1 else 'entries'}" if entries else "nothing decided on it yet"
    return f"History of **{md_text(history.original_name)}** · label now {label} · {history.status} · {listed}"


def empty_history(note: str) -> dict:
    """The box's outputs with no image: note says how to get one."""
    return {TITLE: note, TABLE: pd.DataFrame([], columns=HISTORY_COLUMNS)}


def shown_history(context: Context, user: UserRow | None, image_id: int | None, nothing: str) -> dict:
    """The box's outputs for the image (nothing: the note shown when there is no image)."""
    if image_id is None:
        return empty_history(nothing)
    history = review.image_history(context, user, int(image_id))
    return {TITLE: history_title(history), TABLE: frame_of(history)}


@dataclass(frozen=True)
class HistoryBox:
    """The components of a history box, and its outputs by name for ui/wiring.py."""

    box: gr.Accordion
    title: gr.Markdown
    table: gr.Dataframe
    refresh: gr.Button | None

    @property
    def outputs(self) -> dict:
        """{output name: component} for the values shown_history() returns."""
        return {TITLE: self.title, TABLE: self.table}


def build_history_box(
    label: str, elem_id: str, note: str, *, open: bool = True, refresh: str | None = None
) -> HistoryBox:
    """An accordion with a heading line and the history table (and a button labeled refresh, when given);
    call inside a gr.Blocks. Its parts' ids are elem_id, elem_id-title, elem_id-table, elem_id-refresh."""
    with gr.Accordion(label, open=open, elem_id=elem_id) as box:
        with gr.Row():
            title = gr.Markdown(note, elem_id=f"{elem_id}-title")
            button = gr.Button(refresh, size="sm", scale=0, elem_id=f"{elem_id}-refresh") if refresh else None
        table = gr.Dataframe(
            headers=HISTORY_COLUMNS,
            datatype=column_types(HISTORY_COLUMNS, ("when",)),
            interactive=False,
            wrap=True,
            max_height=320,
            elem_id=f"{elem_id}-table",
        )
    return HistoryBox(box, title, table, button)
