"""The Admin tab (admins only): training, models and the loop, the dataset, audits, accounts, Label Studio, hooks.

Hidden from experts, and every handler in its sections checks the admin role on the server anyway.
"""

from __future__ import annotations

import gradio as gr

from context import Context
from training.scheduler import LoopScheduler
from ui.admin_audit import build_audit_section
from ui.admin_dataset import build_dataset_section
from ui.admin_hooks import build_hooks_section
from ui.admin_label_studio import build_label_studio_section
from ui.admin_models import build_models_section
from ui.admin_training import build_training_section
from ui.admin_users import build_users_section


def build_admin_tab(context: Context, loop: LoopScheduler | None) -> tuple[gr.Tab, gr.Timer]:
    """The Admin tab and the timer that polls running trainings; call inside a gr.Blocks."""
    with gr.Tab("Admin", id="admin", visible=False) as tab:
        with gr.Tabs():
            with gr.Tab("Training", id="admin-training") as training_tab:
                timer, fill_training = build_training_section(context)
            with gr.Tab("Models & loop", id="admin-models") as models_tab:
                fill_models = build_models_section(context, loop)
            with gr.Tab("Dataset", id="admin-dataset") as dataset_tab:
                fill_dataset = build_dataset_section(context)
            with gr.Tab("Audit & agreement", id="admin-audit") as audit_tab:
                fill_audit = build_audit_section(context)
            with gr.Tab("Users", id="admin-users") as users_tab:
                fill_users = build_users_section(context)
            with gr.Tab("Label Studio", id="admin-label-studio") as label_studio_tab:
                fill_label_studio = build_label_studio_section(context)
            with gr.Tab("Hooks", id="admin-hooks") as hooks_tab:
                fill_hooks = build_hooks_section(context)
    tab.select(**fill_training, api_visibility="private")
    training_tab.select(**fill_training, api_visibility="private")
    models_tab.select(**fill_models, api_visibility="private")
    dataset_tab.select(**fill_dataset, api_visibility="private")
    audit_tab.select(**fill_audit, api_visibility="private")
    users_tab.select(**fill_users, api_visibility="private")
    hooks_tab.select(**fill_hooks, api_visibility="private")
    label_studio_tab.select(**fill_label_studio, api_visibility="private")
    return tab, timer
