"""Admin → Models & loop: model versions with promote / rollback / download, and the retraining loop's policy."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import pandas as pd

from context import Context
from db import model_versions as version_db
from db import runs as run_db
from labeling import review
from labeling.ranking.scoring import serving_pass
from training import hooks, promotion
from training.archive import build_archive
from training.first_model import FIRST_MODEL_RULE, first_model_note
from training.scheduler import (
    LoopPolicy,
    LoopScheduler,
    decisions_since_last_run,
    head_check_note,
    last_rescore,
    load_policy,
    save_policy,
)
from ui.auth import require_role_in_handler
from ui.markdown import html_text, md_text
from ui.readable import column_types, count, duration, share, when
from ui.refusals import shows_refusals
from ui.wiring import wire

HEAD_MODELS_RULE = (
    "After each settled ranking the loop fits a head on the ranking's cached image embeddings (seconds) and "
    "measures it and the served version on today's validation split; when the head errs less, it is trained "
    "as a version and goes through the gate. Every fine-tune is compared with such a head at the gate too, "
    "and is served only when it errs no more than the head."
)
VERSION_COLUMNS = [
    "version",
    "kind",
    "status",
    "run",
    "error rate",
    "at the gate",
    "promoted then",
    "head baseline",
    "gate",
    "created",
    "promoted",
]


def versions_table(context: Context) -> pd.DataFrame:
    """Every kept version, newest first: its kind, error rates (its own, and at the gate beside the promoted
    version and the head baseline) and the gate's verdict."""
    rows = []
    for v in reversed(version_db.list_versions(context.database)):
        gate = v.metrics.get("gate") or {}
        rows.append(
            [
                v.version,
                v.metrics.get("kind", run_db.FINETUNE),
                v.status,
                v.run_id,
                share(v.metrics.get("error_rate")),
                share(gate.get("candidate_error")),
                share(gate.get("incumbent_error")),
                share(gate.get("baseline_error")),
                gate.get("reason", ""),
                when(v.created_at),
                when(v.promoted_at) if v.promoted_at else "",
            ]
        )
    return pd.DataFrame(rows, columns=VERSION_COLUMNS)


def loop_status(context: Context, loop: LoopScheduler | None) -> str:
    """What the loop did last and will do next, in a few lines."""
    policy = load_policy(context)
    rescored = last_rescore(context)
    active = run_db.active_run(context.database)
    lines = [
        "The scheduler is **running** in this server."
        if loop
        else "The scheduler is **off** in this server (LOUPE_SCHEDULER=0).",
        f"Last quick rescore: {when(rescored.get('rescored_at'))}"
        + (
            f" ({count(rescored.get('scored'))} images in {duration(rescored.get('seconds'))})."
            if rescored.get("scored")
            else "."
        ),
        ranking_line(context),
        first_model_line(context, policy),
        head_check_line(context, policy),
        f"Decisions since the last fine-tune: **{count(decisions_since_last_run(context))}**"
        + (
            f" (a retrain starts at {count(policy.retrain_after_decisions)})."
            if policy.retrain_after_decisions
            else " (the decision trigger is off)."
        ),
        f"Training now: run {active.id} ({active.status})." if active else "No training run is active.",
    ]
    hook_failures = hooks.failure_note(context)
    if hook_failures:
        lines.append(f"**{hook_failures}**")
    if rescored.get("error"):
        lines.append(f"**The quick loop cannot rescore:** {md_text(rescored['error'])} The last ranking keeps serving.")
    if loop:
        lines += [f"- next {name}: {when(next_time)}" for name, next_time in loop.jobs()]
    return "\n\n".join(lines)


FIRST_MODEL_STATES = {"held": "not retried yet"}  # the others (waiting, started, done, off) read as they are


def first_model_line(context: Context, policy: LoopPolicy) -> str:
    """What the first-model check decided last and why (it runs with the retrain check)."""
    if not policy.first_model:
        return "First model: **off** (an admin's Retrain or the decision count trains the first model)."
    note = first_model_note(context)
    if not note:
        return "First model: not checked yet (the scheduler checks with each retrain check)."
    state = FIRST_MODEL_STATES.get(note.get("state"), note.get("state"))
    return f"First model: **{state}** — {md_text(note.get('reason', ''))} ({when(note.get('at'))})."


def head_check_line(context: Context, policy: LoopPolicy) -> str:
    """What the last head check (after a settled ranking) found, and what it did."""
    if not policy.head_models:
        return "Heads after each ranking: **off**."
    note = head_check_note(context)
    if not note:
        return "Heads after each ranking: no settled ranking checked yet."
    return f"Heads after each ranking: {md_text(note.get('outcome', ''))} ({when(note.get('at'))})."


def ranking_line(context: Context) -> str:
    """Which scoring pass the queue reads, and cleanlab's estimate of the wrong labels left in it."""
    serving = serving_pass(context)
    if not serving:
        return "The queue has no ranking yet."
    estimate = serving.get("estimated_wrong")
    left = (
        f" It estimates **{estimate}** of {serving.get('labeled')} labels are wrong (confident learning)."
        if estimate is not None
        else ""
    )
    return f"The queue reads the pass `{serving['scorer']}`.{left}"


def entered_number(value, what: str, kind: type = float) -> float | int:
    """value as a finite number of kind (int: a whole number), or a gr.Error saying what it should be."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (kind is int and not number.is_integer()):
        wanted = "a whole number" if kind is int else "a number"
        raise gr.Error(html_text(f"{what} must be {wanted} (got {value!r})."))
    return int(number) if kind is int else number


def make_handlers(context: Context, loop: LoopScheduler | None):
    """The Models & loop section's handlers, bound to this Loupe instance; each returns {output name: value}."""

    def refresh(request: gr.Request) -> dict:
        require_role_in_handler(context, request, review.ADMIN)
        policy = load_policy(context)
        versions = [v.version for v in reversed(version_db.list_versions(context.database))]
        return {
            "versions": versions_table(context),
            "chosen": gr.Dropdown(choices=versions, value=None),
            "status": loop_status(context, loop),
            "quick_loop": policy.quick_loop,
            "first_model": policy.first_model,
            "head_models": policy.head_models,
            "debounce_s": policy.debounce_s,
            "retrain_after": policy.retrain_after_decisions,
            "cron": policy.retrain_cron,
            "tolerance": policy.tolerance,
            "freeze_epochs": policy.freeze_epochs,
            "epochs": policy.epochs,
            "size": policy.size,
        }

    def promote(request: gr.Request, version: str | None) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        if not version:
            raise gr.Error("Choose a version to promote.")
        promotion.promote(context, version, hooks.by_admin(user))
        gr.Info(html_text(f"{version} promoted by {user.name}; the predictor switches within seconds."))
        return refresh(request)

    def rollback(request: gr.Request) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        restored = promotion.rollback(context, hooks.by_admin(user))
        gr.Info(html_text(f"Rolled back to {restored.version} by {user.name}."))
        return refresh(request)

    def save(
        request: gr.Request,
        quick_loop,
        debounce_s,
        retrain_after,
        cron,
        tolerance,
        freeze_epochs,
        epochs,
        size,
        first_model=True,  # last, so callers written before it existed keep their order
        head_models=True,
    ) -> dict:
        require_role_in_handler(context, request, review.ADMIN)
        policy = LoopPolicy(
            quick_loop=bool(quick_loop),
            first_model=bool(first_model),
            head_models=bool(head_models),
            debounce_s=entered_number(debounce_s, "The quiet time before a rescore"),
            retrain_after_decisions=entered_number(retrain_after, "The number of decisions before a retrain", int),
            retrain_cron=str(cron or "").strip(),
            tolerance=entered_number(tolerance, "The promotion tolerance"),
            freeze_epochs=entered_number(freeze_epochs, "The number of frozen epochs", int),
            epochs=entered_number(epochs, "The number of unfrozen epochs", int),
            size=entered_number(size, "The image size", int),
        )
        save_policy(context, policy)  # BadPolicy says which setting cannot work
        if loop:
            loop.sync_cron()
        gr.Info("Loop settings saved.")
        return refresh(request)

    return tuple(shows_refusals(handler) for handler in (refresh, promote, rollback, save))


def make_archive_handler(context: Context, cache_folder: Callable[[], str]):
    """The handler that builds a version's archive (model, export, classes, card) for the admin who asks.

    cache_folder gives the output component's Gradio cache: the Admin tab's copies, whose file route
    serves admins only (ui/mounts.py). The zip is built there, in a new folder with a random name, so
    Gradio serves it without copying it, only the asker learns its path, and the cache's sweep removes it.
    """

    def archive(request: gr.Request, version: str | None) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        if not version:
            raise gr.Error("Choose a version to download.")
        path = build_archive(context, str(version), into=Path(cache_folder()))
        gr.Info(html_text(f"{path.name} is ready for {user.name}."))
        return {"archive_file": str(path)}

    return shows_refusals(archive)


def build_models_section(context: Context, loop: LoopScheduler | None) -> dict:
    """The Models & loop section's components and wiring; returns the handler that fills it."""
    refresh, promote, rollback, save = make_handlers(context, loop)
    gr.Markdown("### Model versions")
    versions = gr.Dataframe(
        headers=VERSION_COLUMNS,
        datatype=column_types(VERSION_COLUMNS, ("created", "promoted")),
        interactive=False,
        elem_id="versions-table",
    )
    with gr.Row():
        chosen = gr.Dropdown([], label="Version", allow_custom_value=True, elem_id="version-choice", scale=3)
        promote_button = gr.Button("Promote", variant="primary", elem_id="promote-version")
        rollback_button = gr.Button("Roll back", elem_id="rollback-version")
        archive_button = gr.Button("Download archive", elem_id="archive-version")
    archive_file = gr.File(
        label="Model archive: model.onnx, export.pkl, classes.json, MODEL_CARD.md, confusion_matrix.png",
        interactive=False,
        elem_id="version-archive",
    )
    gr.Markdown("### Retraining loop")
    status = gr.Markdown(elem_id="loop-status")
    with gr.Row():
        quick_loop = gr.Checkbox(label="Quick loop: rescore after decisions")
        debounce_s = gr.Number(label="…once decisions are quiet for (s)", minimum=0)
        retrain_after = gr.Number(label="Retrain after N decisions (0: off)", precision=0, minimum=0)
        cron = gr.Textbox(label="Retrain on a schedule (crontab, UTC; empty: off)", placeholder="0 3 * * *")
    with gr.Row():
        tolerance = gr.Number(label="Promotion tolerance (error-rate points, 0.01 = 1%)", minimum=0, maximum=1)
        freeze_epochs = gr.Number(label="Frozen epochs", precision=0, minimum=0)
        epochs = gr.Number(label="Unfrozen epochs", precision=0, minimum=0)
        size = gr.Number(label="Image size (px)", precision=0, minimum=32, step=32)
    with gr.Row():
        first_model = gr.Checkbox(label="First model: train one by itself when none is promoted", scale=1)
        gr.Markdown(FIRST_MODEL_RULE)
    with gr.Row():
        head_models = gr.Checkbox(
            label="Heads after each ranking: serve a head when it beats the served model", scale=1
        )
        gr.Markdown(HEAD_MODELS_RULE)
    save_button = gr.Button("Save loop settings", elem_id="save-loop")

    policy_fields = {
        "quick_loop": quick_loop,
        "debounce_s": debounce_s,
        "retrain_after": retrain_after,
        "cron": cron,
        "tolerance": tolerance,
        "freeze_epochs": freeze_epochs,
        "epochs": epochs,
        "size": size,
        "first_model": first_model,
        "head_models": head_models,
    }
    named = {"versions": versions, "chosen": chosen, "status": status, **policy_fields}
    fill, outputs = wire(refresh, named)
    promote_fn, _ = wire(promote, named)
    rollback_fn, _ = wire(rollback, named)
    save_fn, _ = wire(save, named)
    promote_button.click(promote_fn, inputs=chosen, outputs=outputs, api_name="promote_version")
    rollback_button.click(rollback_fn, outputs=outputs, api_name="rollback_version")
    save_button.click(save_fn, inputs=list(policy_fields.values()), outputs=outputs, api_name="save_loop_policy")
    archive_fn, archive_outputs = wire(
        make_archive_handler(context, lambda: archive_file.GRADIO_CACHE), {"archive_file": archive_file}
    )
    archive_button.click(archive_fn, inputs=chosen, outputs=archive_outputs, api_name="model_archive")
    return {"fn": fill, "outputs": outputs}
