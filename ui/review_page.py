"""The login-protected page at /review: the Review, Grid, Duplicates and Map tabs and, for admins, the Admin tab.

selection (image ids chosen on the Map) is shared: the Map sets it, Review shows only those while it holds any.
"""

from __future__ import annotations

import gradio as gr

from context import Context
from db.users import get_user
from training.scheduler import LoopScheduler
from ui.admin_tab import build_admin_tab
from ui.duplicates_tab import build_duplicates_tab
from ui.grid_tab import build_grid_tab
from ui.map_tab import build_map_tab
from ui.markdown import md_text
from ui.review_tab import build_review_tab


def build_review_page(context: Context, loop: LoopScheduler | None = None) -> tuple[gr.Blocks, gr.Tab]:
    """The Blocks mounted at /review behind the login form, and its Admin tab (whose files are admins' only)."""

    def on_load(request: gr.Request):
        user = get_user(context.database, request.username) if request.username else None
        is_admin = bool(user and user.role == "admin" and not user.disabled)
        role = user.role if user else "unknown"
        greeting = f"Logged in as **{md_text(request.username)}** ({role}) · [log out](/review/logout)"
        return greeting, gr.Tab(visible=is_admin), gr.Timer(active=is_admin)

    with gr.Blocks(title="Loupe — Review") as page:
        gr.Markdown("# Loupe")
        who = gr.Markdown(elem_id="who")
        selection = gr.State([])
        with gr.Tabs() as tabs:
            show_next = build_review_tab(context, selection)
            build_grid_tab(context)
            build_duplicates_tab(context)
            build_map_tab(context, selection, tabs)
            admin, training_timer = build_admin_tab(context, loop)
        page.load(on_load, outputs=[who, admin, training_timer], api_visibility="private")
        page.load(**show_next)
    return page, admin
