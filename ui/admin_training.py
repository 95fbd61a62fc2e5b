"""Admin → Training: the Retrain now button, the runs table with live progress, and one run in detail."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from context import Context
from db import runs as run_db
from labeling import review
from training import charts
from training.launcher import launch
from training.scheduler import load_policy
from ui import readable
from ui.admin_models import entered_number
from ui.auth import require_role_in_handler
from ui.markdown import html_text, md_text
from ui.refusals import shows_refusals
from ui.wiring import wire

RUN_COLUMNS = [
    "run",
    "kind",
    "status",
    "trigger",
    "device",
    "started",
    "took",
    "images",
    "decisions",
    "progress",
    "error rate",
    "at the gate",
    "promoted then",
    "head baseline",
    "gate or error",
]
PER_CLASS_COLUMNS = ["class", "accuracy"]
CONFUSED_COLUMNS = ["actual", "predicted", "count"]
POLL_S = 2.0
SHOWN_RUNS = 30


def progress_text(run: run_db.RunRow) -> str:
    """Where an active run is ('frozen epoch 1/1, batch 20/45'), or what an ended one did."""
    if run.status not in run_db.ACTIVE_STATUSES:
        return run.status
    p = run.progress
    if not p:
        return "starting"
    if "error_rate" in run.metrics:  # recorded after the last epoch, before the version is written
        return "writing the version and comparing it with the promoted one"
    if run.kind == run_db.HEAD:
        return str(p.get("phase"))
    return f"{p.get('phase')} epoch {p.get('epoch')}/{p.get('n_epochs')}, batch {p.get('batch')}/{p.get('n_batches')}"


def run_outcome(run: run_db.RunRow) -> str:
    """The error's first line for a failed run, else the promotion gate's verdict (empty before it)."""
    if run.error:
        return run.error.splitlines()[0][:160]
    gate = run.metrics.get("gate")
    if gate:
        return f"{'promoted' if gate['promote'] else 'kept as candidate'}: {gate['reason']}"
    return ""


def runs_table(context: Context, runs: list[run_db.RunRow]) -> pd.DataFrame:
    """The runs, one row each."""
    included = run_db.decisions_included(context.database, [run.id for run in runs])
    rows = []
    for run in runs:
        gate = run.metrics.get("gate") or {}
        rows.append(
            [
                run.id,
                run.kind,
                run.status,
                run.trigger,
                run.device or "",
                readable.when(run.started_at) if run.started_at else "",
                readable.duration(run.seconds),
                run.image_count,
                included.get(run.id, 0),
                progress_text(run),
                readable.share(run.metrics.get("error_rate")),
                readable.share(gate.get("candidate_error")),
                readable.share(gate.get("incumbent_error")),
                readable.share(gate.get("baseline_error")),
                run_outcome(run),
            ]
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def run_choices(runs: list[run_db.RunRow]) -> list[tuple[str, int]]:
    """(shown text, run id) for the dropdown."""
    return [(f"run {r.id} · {r.kind} · {r.status} · {r.trigger}", r.id) for r in runs]


def run_summary(run: run_db.RunRow) -> str:
    """One run in words: what it was asked, what happened, the gate's verdict and the diagnosis."""
    m = run.metrics
    if run.kind == run_db.HEAD:
        head = m.get("head") or {}
        encoders = ", ".join(head.get("encoders", [])) or "the ranking's encoders"
        asked = (
            f"Trigger **{run.trigger}** · a head on the cached embeddings ({encoders}; logistic regression, "
            f"C = {head.get('C', '—')}) · {run.image_count or '—'} images"
        )
    else:
        asked = (
            f"Trigger **{run.trigger}** · fine-tune of {run.arch} at {run.params.get('size')} px · device "
            f"{run.device or '—'} · {run.image_count or '—'} images · epochs {run.params.get('freeze_epochs')} "
            f"frozen + {run.params.get('epochs')} unfrozen · learning rate "
            f"{m.get('lr') or run.params.get('lr') or 'found'}"
        )
    lines = [f"### Run {run.id}: {run.status}", asked]
    if run.started_at:
        took = "running for" if run.status in run_db.ACTIVE_STATUSES else "took"
        lines.append(f"Started {readable.when(run.started_at)} · {took} {readable.duration(run.seconds)}")
    if run.status in run_db.ACTIVE_STATUSES:
        lines.append(f"Now: {progress_text(run)}")
    if m.get("error_rate") is not None:
        lines.append(f"Validation error rate **{m['error_rate']:.1%}** on {m.get('valid_count')} images.")
    gate = m.get("gate")
    if gate:
        lines.append(f"Promotion gate: **{'promoted' if gate['promote'] else 'not promoted'}** — {gate['reason']}.")
    if run.error:
        lines.append(f"Error: {md_text(run.error.splitlines()[0])}")  # may quote a label or a file name
    for finding in m.get("diagnosis", []):
        lines.append(f"- {finding}")
    return "\n\n".join(lines)


def chosen_run(run_id) -> int | None:
    """The run id the Run dropdown holds (None when none is chosen), or a gr.Error for typed text."""
    if run_id is None or str(run_id).strip() == "":
        return None
    try:
        return int(run_id)
    except (TypeError, ValueError, OverflowError):
        raise gr.Error(
            html_text(f"Choose a run from the list: a run is named by its number (got {run_id!r}).")
        ) from None


def make_handlers(context: Context):
    """The Training section's handlers, bound to this Loupe instance; each returns {output name: value}."""
    database = context.database

    def details(run_id: int | None) -> dict:
        run = run_db.get_run(database, run_id) if run_id is not None else None
        if run is None:
            return {
                "summary": "Choose a run.",
                "curves": None,
                "finder": None,
                "confusion": None,
                "per_class": None,
                "confused": None,
            }
        m = run.metrics
        history = m.get("history") or run.progress.get("history") or []
        per_class = pd.DataFrame(
            [[name, f"{acc:.1%}" if acc is not None else ""] for name, acc in m.get("per_class_accuracy", {}).items()],
            columns=PER_CLASS_COLUMNS,
        )
        return {
            "summary": run_summary(run),
            "curves": charts.loss_curves(history),
            "finder": charts.lr_finder(m.get("lr_find")),
            "confusion": charts.confusion_matrix(m.get("confusion_matrix"), m.get("classes", [])),
            "per_class": per_class,
            "confused": pd.DataFrame(m.get("most_confused", []), columns=CONFUSED_COLUMNS),
        }

    def refresh(request: gr.Request, run_id: int | None) -> dict:  # request first: Gradio injects it only there
        require_role_in_handler(context, request, review.ADMIN)
        run_id = chosen_run(run_id)
        runs = run_db.list_runs(database, limit=SHOWN_RUNS)
        return {
            "table": runs_table(context, runs),
            "chosen": gr.Dropdown(choices=run_choices(runs), value=run_id),
            **details(run_id),
        }

    def tick(request: gr.Request, run_id: int | None, was_active: bool) -> dict | None:
        # Refreshes while a run is active and once more after it ends; an idle tab costs one small
        # query every POLL_S.
        require_role_in_handler(context, request, review.ADMIN)
        active = run_db.active_run(database)
        if active is None and not was_active:
            return None  # nothing changed, was_active included
        run_id = chosen_run(run_id)
        if run_id is None:  # follow the active run, or the one that just ended
            run_id = active.id if active else next((r.id for r in run_db.list_runs(database, limit=1)), None)
        return refresh(request, run_id) | {"was_active": active is not None}

    def retrain(request: gr.Request, epochs: float, freeze_epochs: float, lr: str, find_lr: bool) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        try:
            rate = float(lr) if str(lr or "").strip() else None
        except ValueError:
            raise gr.Error(html_text(f"The learning rate must be a number like 0.002 (got {lr!r}).")) from None
        policy = load_policy(context)  # the loop's image size and promotion tolerance apply here too
        run_id = launch(  # TrainingBusy, BadTrainingRequest, BackboneError: shown by shows_refusals
            context,
            "manual",
            epochs=entered_number(epochs, "The number of unfrozen epochs", int),
            freeze_epochs=entered_number(freeze_epochs, "The number of frozen epochs", int),
            lr=rate,
            find_lr=bool(find_lr),
            size=policy.size,
            tolerance=policy.tolerance,
        )
        gr.Info(html_text(f"Training run {run_id} started by {user.name}."))
        return refresh(request, run_id)

    def train_head(request: gr.Request) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        run_id = launch(context, "manual", kind=run_db.HEAD, tolerance=load_policy(context).tolerance)
        gr.Info(html_text(f"Head run {run_id} started by {user.name}; it takes seconds."))
        return refresh(request, run_id)

    def cancel(request: gr.Request, run_id: int | None) -> dict:
        require_role_in_handler(context, request, review.ADMIN)
        run_id = chosen_run(run_id)
        if run_id is None or not run_db.request_cancel(database, run_id):
            gr.Warning("That run is not queued or running.")
        else:
            gr.Info(f"Asked run {run_id} to stop after its current batch.")
        return refresh(request, run_id)

    def retry(request: gr.Request, run_id: int | None) -> dict:
        require_role_in_handler(context, request, review.ADMIN)
        run_id = chosen_run(run_id)
        run = run_db.get_run(database, run_id) if run_id is not None else None
        if run is None or run.status not in ("failed", "cancelled"):
            raise gr.Error("Choose a failed or cancelled run to retry.")
        new_id = launch(context, "retry", run.arch, run.kind, **run.params)  # the parameters it was queued with
        gr.Info(f"Run {run_id} retried as run {new_id}.")
        return refresh(request, new_id)

    return tuple(shows_refusals(handler) for handler in (refresh, tick, retrain, cancel, retry, train_head))


def build_training_section(context: Context) -> tuple[gr.Timer, dict]:
    """The Training section's components and wiring; returns its timer and the handler that fills it."""
    refresh, tick, retrain, cancel, retry, train_head = make_handlers(context)
    default_policy = load_policy(context)
    gr.Markdown("### Retrain now")
    with gr.Row():
        freeze_epochs = gr.Number(default_policy.freeze_epochs, label="Frozen epochs", precision=0, minimum=0)
        epochs = gr.Number(default_policy.epochs, label="Unfrozen epochs", precision=0, minimum=0)
        lr = gr.Textbox(label="Learning rate (empty: 0.002, or the finder's)", max_lines=1, elem_id="retrain-lr")
        find_lr = gr.Checkbox(label="Find the learning rate first", value=False)
    with gr.Row():
        retrain_button = gr.Button("Retrain now (fine-tune)", variant="primary", elem_id="retrain-now")
        head_button = gr.Button("Train a head on the cached embeddings", elem_id="train-head")
    gr.Markdown("### Training runs")
    table = gr.Dataframe(
        headers=RUN_COLUMNS,
        datatype=readable.column_types(RUN_COLUMNS, ("started",)),
        interactive=False,
        elem_id="runs-table",
        label="Newest first",
    )
    with gr.Row():
        chosen = gr.Dropdown([], label="Run", allow_custom_value=True, elem_id="run-choice", scale=3)
        cancel_button = gr.Button("Cancel run", size="sm", variant="stop")
        retry_button = gr.Button("Retry run", size="sm")
    summary = gr.Markdown(elem_id="run-summary")
    with gr.Row():
        curves = gr.Plot(label="Loss and error rate per epoch", elem_id="run-curves")
        finder = gr.Plot(label="Learning-rate finder")
    with gr.Row():
        confusion = gr.Plot(label="Confusion matrix (validation)", elem_id="run-confusion")
        with gr.Column():
            per_class = gr.Dataframe(headers=PER_CLASS_COLUMNS, label="Per-class accuracy", interactive=False)
            confused = gr.Dataframe(headers=CONFUSED_COLUMNS, label="Most confused", interactive=False)
    timer = gr.Timer(POLL_S, active=False)
    was_active = gr.State(False)

    shown = {
        "table": table,
        "chosen": chosen,
        "summary": summary,
        "curves": curves,
        "finder": finder,
        "confusion": confusion,
        "per_class": per_class,
        "confused": confused,
    }
    fill, outputs = wire(refresh, shown)
    retrain_fn, _ = wire(retrain, shown)
    cancel_fn, _ = wire(cancel, shown)
    retry_fn, _ = wire(retry, shown)
    head_fn, _ = wire(train_head, shown)
    tick_fn, tick_outputs = wire(tick, shown | {"was_active": was_active})
    retrain_button.click(
        retrain_fn, inputs=[epochs, freeze_epochs, lr, find_lr], outputs=outputs, api_name="retrain_now"
    )
    head_button.click(head_fn, outputs=outputs, api_name="train_head")
    chosen.input(fill, inputs=chosen, outputs=outputs, api_name="admin_runs")
    cancel_button.click(cancel_fn, inputs=chosen, outputs=outputs, api_name="cancel_run")
    retry_button.click(retry_fn, inputs=chosen, outputs=outputs, api_name="retry_run")
    timer.tick(
        tick_fn,
        inputs=[chosen, was_active],
        outputs=tick_outputs,
        api_visibility="private",
        show_progress="hidden",
    )
    return timer, {"fn": fill, "inputs": chosen, "outputs": outputs}
