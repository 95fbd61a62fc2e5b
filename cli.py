"""Loupe's command line: one thin command per job over the same services the web edges call.

Run `loupe --help` (or `python server.py --help`). Each command parses its arguments, calls a function
in labeling/, training/, db/ or models/, and prints the result; a refusal (a LoupeError) is printed as
one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

# Gradio looks up its analytics hosts in the background unless told not to; Loupe runs offline.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from context import Context  # noqa: E402
from db.runs import FINETUNE, RUN_KINDS  # noqa: E402
from errors import LoupeError  # noqa: E402
from labeling.instance.export import FORMATS as EXPORT_FORMATS  # noqa: E402
from labeling.ranking.duplicates import SIMILARITY_THRESHOLD  # noqa: E402
from labeling.review import ACTIONS as REVIEW_ACTIONS  # noqa: E402
from models.specs import SPECS  # noqa: E402
from settings import Settings  # noqa: E402
from training.params import DEFAULTS, SIZE_STEP  # noqa: E402

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


class CliProgress:
    """A tqdm bar fed by (done, total) calls, as import and export report them."""

    def __init__(self, description: str):
        self.description = description
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.description, unit="img", file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        """Finish the bar's line."""
        if self.bar is not None:
            self.bar.close()


def _print_summary(summary) -> None:
    print(summary.as_text())


def cmd_serve(context: Context, args: argparse.Namespace) -> int:
    import uvicorn

    from db.users import list_users
    from server import build_app, build_predict_app

    if args.predict_only:
        print(
            f"Loupe predictions on http://{args.host}:{args.port} in {args.workers} process(es) "
            "(Predict at /, /api/predict, /api/classify-url, /api/health; no review app, no loop)"
        )
        if args.workers == 1:
            uvicorn.run(build_predict_app(context), host=args.host, port=args.port, log_level="warning")
        else:  # each process opens its own context from the environment, on one shared listening socket
            uvicorn.run(
                "server:predict_app_from_env",
                factory=True,
                workers=args.workers,
                host=args.host,
                port=args.port,
                log_level="warning",
            )
        return 0
    if args.workers != 1:
        raise LoupeError("--workers is for --predict-only: the full app runs the loop, which one process owns")
    if not any(u.role == "admin" for u in list_users(context.database)):
        print(
            "No admin account yet. Create one (in another terminal) to use /review:\n"
            "  .venv/bin/loupe user add NAME --role admin",
            file=sys.stderr,
        )
    print(f"Loupe serving on http://{args.host}:{args.port}  (Predict at /, Review and Admin at /review)")
    uvicorn.run(build_app(context), host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_demo(context: Context, args: argparse.Namespace) -> int:
    from db.images import count_images
    from labeling.imports.demo import import_demo

    if args.if_empty and count_images(context.database) > 0:
        print("The database already holds images; demo import skipped.")
        return 0
    progress = CliProgress("demo digits")
    summary = import_demo(context, progress)
    progress.close()
    _print_summary(summary)
    return 0


def cmd_import(context: Context, args: argparse.Namespace) -> int:
    from labeling.imports.ingest import import_paths

    progress = CliProgress("import")
    summary = import_paths(context, args.paths, label=args.label, progress=progress, files_root=args.files_root)
    progress.close()
    _print_summary(summary)
    return 0


def cmd_import_urls(context: Context, args: argparse.Namespace) -> int:
    from labeling.imports.urls import import_url_lists

    progress = CliProgress("download")
    summary = import_url_lists(
        context, args.files, workers=args.workers, timeout_s=args.timeout, retries=args.retries, progress=progress
    )
    progress.close()
    _print_summary(summary)
    return 0


def cmd_user_add(context: Context, args: argparse.Namespace) -> int:
    from db.users import add_user

    password = os.environ.get("LOUPE_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            print("error: set LOUPE_PASSWORD or run in a terminal to type the password", file=sys.stderr)
            return 2
        password = getpass.getpass(f"Password for {args.name}: ")
        if password != getpass.getpass("Again: "):
            print("error: the passwords differ", file=sys.stderr)
            return 2
    user = add_user(context.database, args.name, args.role, password)
    print(f"user {user.name} added with role {user.role}")
    return 0


def cmd_export(context: Context, args: argparse.Namespace) -> int:
    from labeling.instance.export import export_dataset

    progress = CliProgress("export")
    try:
        summary = export_dataset(context, args.dest, args.format, progress, ls_image_prefix=args.ls_image_prefix)
    finally:
        progress.close()
    print(f"exported {summary.images} images and {summary.decisions} decisions to {summary.destination}")
    return 0


def cmd_worker(context: Context, args: argparse.Namespace) -> int:
    from training.launcher import serve_queued_runs

    print(f"training worker on {context.settings.resolved_database_url.split('@')[-1]}: waiting for queued runs")
    try:
        done = serve_queued_runs(context, poll_s=args.poll_s, once=args.once)
    except KeyboardInterrupt:
        return 0
    print(f"trained {done} run(s)")
    return 0


def cmd_hooks_add(context: Context, args: argparse.Namespace) -> int:
    from training.hooks import add_hook

    added = add_hook(context, None, args.url, args.events, allow_private=args.allow_private)
    print(f"hook {added.hook.id} sends {', '.join(added.hook.events)} to {added.hook.url}")
    print(f"secret (shown only now; the receiver checks each POST's X-Loupe-Signature with it): {added.secret}")
    return 0


def cmd_hooks_list(context: Context, args: argparse.Namespace) -> int:
    from training.hooks import list_hooks, recent_deliveries

    found = list_hooks(context, None)
    if not found:
        print("no hooks registered")
    for hook in found:
        private = ", private addresses allowed" if hook.allow_private else ""
        print(f"{hook.id:>4}  {hook.url}  ({', '.join(hook.events)}{private})")
    failed = [d for d in recent_deliveries(context, None, 20) if d.status == "failed"]
    for delivery in failed:
        print(f"  delivery {delivery.id} ({delivery.event}) to hook {delivery.hook_id} failed: {delivery.last_error}")
    return 0


def cmd_hooks_remove(context: Context, args: argparse.Namespace) -> int:
    from training.hooks import remove_hook

    removed = remove_hook(context, None, args.id)
    print(f"hook {removed.id} ({removed.url}) removed")
    return 0


def cmd_label_studio_token(context: Context, args: argparse.Namespace) -> int:
    from labeling import label_studio

    made = label_studio.make_token(context, _reviewer(context, args.as_user), args.name, args.url)
    print(f"token {made.row.name} for the Label Studio at {made.row.origin} (shown only now):")
    print(made.token)
    print(
        "in Label Studio: project Settings → Model → Connect Model, Backend URL http://<loupe>/api/label-studio, "
        "Basic Authentication with user loupe and this token as the password"
    )
    return 0


def cmd_label_studio_revoke(context: Context, args: argparse.Namespace) -> int:
    from labeling import label_studio

    label_studio.revoke_token(context, _reviewer(context, args.as_user), args.name)
    print(f"token {args.name} revoked")
    return 0


def cmd_label_studio_status(context: Context, args: argparse.Namespace) -> int:
    from labeling import label_studio

    found = label_studio.connections(context, _reviewer(context, args.as_user))
    for token in found.tokens:
        state = "revoked" if token.revoked_at else f"last used {token.last_used_at or 'never'}"
        print(f"token {token.name} ({token.prefix}…) for {token.origin}: {state}")
    for project, tasks, events in found.projects:
        print(f"project {project.project_uid}: {tasks} tasks linked, {events} annotations received")
    for event in found.events[:10]:
        print(f"  annotation {event.annotation_id} by {event.annotator}: {event.outcome}")
    return 0


def cmd_backup(context: Context, args: argparse.Namespace) -> int:
    from labeling.instance.backup import backup

    summary = backup(context, args.dest)
    print(f"backed up the {summary.database} database and {summary.files} files to {summary.destination}")
    return 0


def cmd_restore(context: Context, args: argparse.Namespace) -> int:
    from labeling.instance.backup import restore

    if not args.yes:
        print("restore replaces this instance's database and files; stop the server, then add --yes", file=sys.stderr)
        return 2
    summary = restore(context, args.source)
    print(f"restored the {summary.database} database and {summary.files} files into {summary.destination}")
    return 0


def cmd_stats(context: Context, args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from db.stats import dataset_stats
    from labeling import review

    stats = dataset_stats(context.database)
    cleanliness = review.measure_cleanliness(context)
    if args.json:
        print(json.dumps({**asdict(stats), "estimates": asdict(cleanliness)}, default=str))
        return 0
    print(
        f"images: {stats.total} ({stats.active} active, {stats.deleted} deleted, {stats.purged} purged, "
        f"{stats.unlabeled} unlabeled)"
    )
    print(f"split: {stats.by_split.get('train', 0)} train, {stats.by_split.get('valid', 0)} valid")
    print(f"rejected at import: {stats.rejected}")
    for label, per_split in stats.by_label.items():
        print(f"  {label}: {per_split.get('train', 0)} train, {per_split.get('valid', 0)} valid")
    print("how clean the labels are:")
    for sentence in cleanliness.sentences():
        print(f"  {sentence}")
    return 0


def cmd_audit(context: Context, args: argparse.Namespace) -> int:
    from labeling import review

    user = _reviewer(context, args.as_user)
    drawn = review.start_audit(context, user, args.size, args.seed)
    print(f"audit {drawn.audit_id}: drew {drawn.sampled} of {drawn.population} unreviewed images")
    for band in drawn.bands:
        print(f"  {band['name']}: {band['drawn']} of {band['size']}")
    print("experts get them blind in the review queue; `loupe stats` shows the estimates as answers come in")
    return 0


class TrainingBar:
    """A tqdm bar over all batches of a run, fed from the progress the worker writes to the database."""

    def __init__(self):
        self.bar = None

    def __call__(self, run) -> None:
        from tqdm import tqdm

        progress = run.progress if run else {}
        if not progress.get("n_batches") or progress.get("phase") == "lr_find":
            return
        params = run.params
        per_epoch = progress["n_batches"]
        if self.bar is None:
            total = (int(params["freeze_epochs"]) + int(params["epochs"])) * per_epoch
            self.bar = tqdm(total=total, desc=f"training run {run.id}", unit="batch", file=sys.stderr)
        done_epochs = len(progress.get("history", []))
        position = done_epochs * per_epoch + (progress.get("batch") or 0)
        loss = progress.get("train_loss")
        self.bar.set_postfix_str(f"{progress.get('phase')} loss {loss:.3f}" if loss is not None else "")
        self.bar.update(max(0, min(position, self.bar.total) - self.bar.n))

    def close(self) -> None:
        """Finish the bar's line."""
        if self.bar is not None:
            self.bar.close()


def cmd_train(context: Context, args: argparse.Namespace) -> int:
    from db.runs import request_cancel
    from training.launcher import queue_run, spawn_worker, wait_for_worker

    run_id = queue_run(
        context,
        args.arch,
        kind=args.kind,
        size=args.size,
        epochs=args.epochs,
        freeze_epochs=args.freeze_epochs,
        lr=args.lr,
        find_lr=args.find_lr,
        batch_size=args.batch_size,
        weights=args.weights,
        promote=not args.no_promote,
    )
    process = spawn_worker(context, run_id)
    bar = TrainingBar()
    try:
        run = wait_for_worker(context, run_id, process, on_progress=bar)
    except KeyboardInterrupt:
        request_cancel(context.database, run_id)
        print("\ncancelling…", file=sys.stderr)
        run = wait_for_worker(context, run_id, process)
    finally:
        bar.close()
    if run.status != "succeeded":
        print(f"training run {run_id} {run.status}" + (f": {run.error.splitlines()[0]}" if run.error else ""))
        return 1
    metrics = run.metrics
    print(f"training run {run_id} succeeded on {run.device} in {metrics.get('seconds')} s")
    for epoch, row in enumerate(metrics.get("history", []), start=1):
        print(
            f"  epoch {epoch} ({row['phase']}): train loss {row['train_loss']:.3f}, "
            f"valid loss {row['valid_loss']:.3f}, error rate {row['error_rate']:.1%}"
        )
    if "lr_find" in metrics:
        print(f"  learning-rate finder suggested {metrics['lr_find']['suggested_lr']:.2e}")
    for sentence in metrics.get("diagnosis", []):
        print(f"  diagnosis: {sentence}")
    from db.model_versions import list_versions

    version = next(v.version for v in list_versions(context.database) if v.run_id == run_id)
    gate = metrics.get("gate")
    if gate is None:
        print(f"model version {version} written (a candidate; promote it with `loupe promote {version}`)")
    else:
        verdict = "promoted" if gate["promote"] else "not promoted"
        print(f"model version {version} written and {verdict}: {gate['reason']}")
    return 0


def cmd_versions(context: Context, args: argparse.Namespace) -> int:
    from db.model_versions import list_versions

    def share(value) -> str:
        return f"{value:.1%}" if value is not None else "-"

    for row in list_versions(context.database):
        gate = row.metrics.get("gate") or {}
        head = f"  head baseline {share(gate['baseline_error']):>6}" if gate.get("baseline_error") is not None else ""
        print(
            f"{row.version:>8}  {row.metrics.get('kind', 'finetune'):<8}  {row.status:<10} "
            f"error rate {share(row.metrics.get('error_rate')):>6}{head}  created {row.created_at:%Y-%m-%d %H:%M}"
        )
    return 0


def cmd_promote(context: Context, args: argparse.Namespace) -> int:
    from training.hooks import COMMAND_LINE
    from training.promotion import promote, rollback

    row = rollback(context, COMMAND_LINE) if args.version is None else promote(context, args.version, COMMAND_LINE)
    print(f"model version {row.version} is promoted; running servers switch to it within seconds")
    return 0


def cmd_model_archive(context: Context, args: argparse.Namespace) -> int:
    from training.archive import save_archive

    path = save_archive(context, args.version, args.dest)
    print(f"model version {args.version} written to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_score(context: Context, args: argparse.Namespace) -> int:
    from db.scores import top_scores
    from labeling.ranking.scoring import rescore, serving_pass

    bars: dict[str, CliProgress] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bars.setdefault(stage, CliProgress(stage))(done, total)

    result = rescore(context, progress)
    for bar in bars.values():
        bar.close()
    scorer = result.scorer
    print(f"scored {result.scored} images in {result.seconds:.1f} s ({result.embedded} newly embedded; {scorer})")
    estimate = serving_pass(context).get("estimated_wrong")
    if estimate is not None:
        print(f"about {estimate} labels look wrong (cleanlab's confident-learning estimate)")
    print("likeliest label errors (out-of-sample):")
    for row in top_scores(context.database, scorer, args.top):
        print(
            f"  {row.score:.3f}  image {row.image_id} {row.original_name}: labeled {row.given_label}, "
            f"looks like {row.predicted_label} ({row.top[0][1]:.0%})"
        )
    return 0


def cmd_find_duplicates(context: Context, args: argparse.Namespace) -> int:
    from db.duplicate_pairs import pending_pairs
    from labeling.ranking.duplicates import find_duplicates, pair_embedder
    from labeling.ranking.scoring import ensure_embeddings

    embedder = pair_embedder(context)
    progress = CliProgress(f"embed {embedder.key}")
    ensure_embeddings(context, embedder, progress)
    progress.close()
    added = find_duplicates(context, args.threshold)
    pending = pending_pairs(context.database, limit=args.top)
    print(f"{added} new near-duplicate pairs; pending (most similar first):")
    for pair in pending:
        print(
            f"  pair {pair.id}: image {pair.first_id} {pair.first_name} ~ image {pair.second_id} "
            f"{pair.second_name} (similarity {pair.similarity:.3f})"
        )
    return 0


def _reviewer(context: Context, name: str):
    from db.users import get_user
    from errors import NotFound

    user = get_user(context.database, name)
    if user is None:
        raise NotFound(f"there is no account named {name!r}; add one with `loupe user add`")
    return user


def cmd_queue(context: Context, args: argparse.Namespace) -> int:
    from db.queue import QueueFilters
    from labeling import review

    page = review.queue_page(context, _reviewer(context, args.as_user), QueueFilters(reviewed=False), limit=args.top)
    print(f"{page.unreviewed} unreviewed of {page.total} in the queue; likeliest wrong first:")
    for item in page.items:
        print(
            f"  image {item.image_id} (last decision {item.last_decision_id or '-'}): labeled {item.label}, "
            f"looks like {item.predicted_label}, score {item.score:.3f}  {item.original_name}"
        )
    return 0


def cmd_decide(context: Context, args: argparse.Namespace) -> int:
    from db.decisions import last_decision_id
    from labeling import review

    user = _reviewer(context, args.as_user)
    # The command line shows no view to go stale: it decides on the image as it is now, unless told which
    # decision the caller last saw.
    expected = args.expected_last if args.expected_last is not None else last_decision_id(context.database, args.image)
    row = review.decide(context, user, args.image, args.action, expected_last_id=expected, new_label=args.label)
    print(
        f"decision {row.id}: {row.action} on image {row.image_id} ({row.old_label} -> {row.new_label}) by {user.name}"
    )
    return 0


def cmd_undo(context: Context, args: argparse.Namespace) -> int:
    from labeling import review

    row = review.undo(context, _reviewer(context, args.as_user))
    print(f"decision {row.id} undoes decision {row.undoes_id} on image {row.image_id}")
    return 0


def _positive_int(raw: str) -> int:
    """A whole number of at least 1, for argparse."""
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per job, each with --help."""
    parser = argparse.ArgumentParser(prog="loupe", description="Loupe image labeling and retraining server.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="start the web app (the default command)")
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument(
        "--predict-only",
        action="store_true",
        help="serve only the Predict page and the public API, with ONNX Runtime (no torch, no review app, no loop)",
    )
    serve.add_argument("--workers", type=_positive_int, default=1, help="with --predict-only: processes on the port")
    serve.set_defaults(handler=cmd_serve)

    demo = commands.add_parser("demo", help="import the handwritten-digits demo (10%% labels flipped)")
    demo.add_argument("--if-empty", action="store_true", help="only when the database holds no image")
    demo.set_defaults(handler=cmd_demo)

    imp = commands.add_parser(
        "import",
        help="import folders (class sub-folders = labels), zips, image files, Label Studio JSON exports, "
        "CSV lists or Hugging Face imagefolder trees",
    )
    imp.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    imp.add_argument("--label", help="label for images that are not inside a class folder")
    imp.add_argument(
        "--files-root",
        type=Path,
        metavar="DIR",
        help="where Label Studio's /data/local-files/?d=PATH references start (default: the JSON file's folder)",
    )
    imp.set_defaults(handler=cmd_import)

    urls = commands.add_parser("import-urls", help="download URL lists, one file per class (file name = class)")
    urls.add_argument("files", nargs="+", type=Path, metavar="FILE")
    urls.add_argument("--workers", type=int, help="parallel downloads; 0 = one at a time with full error text")
    urls.add_argument("--timeout", type=float, help="seconds to wait for a server (default 10)")
    urls.add_argument("--retries", type=int, help="extra tries after a timeout or server error (default 2)")
    urls.set_defaults(handler=cmd_import_urls)

    user = commands.add_parser("user", help="manage accounts")
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    user_add = user_commands.add_parser(
        "add", help="add an account; the password comes from LOUPE_PASSWORD or a prompt"
    )
    user_add.add_argument("name")
    user_add.add_argument("--role", choices=["expert", "admin"], required=True)
    user_add.set_defaults(handler=cmd_user_add)

    export = commands.add_parser("export", help="write the cleaned dataset (active images, current labels)")
    export.add_argument("dest", type=Path, metavar="DEST")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="folders")
    export.add_argument(
        "--ls-image-prefix",
        default="",
        metavar="PREFIX",
        help="labelstudio: put before images/<file> in each task, e.g. /data/local-files/?d=mydir/ (default: none)",
    )
    export.set_defaults(handler=cmd_export)

    train = commands.add_parser("train", help="train a model on the current labels, in its own process")
    train.add_argument(
        "--kind",
        choices=RUN_KINDS,
        default=FINETUNE,
        help="finetune: the network (default); head: a logistic-regression head on the ranking's cached image "
        "embeddings, in seconds (no epochs, size or learning rate)",
    )
    train.add_argument(
        "--arch", default=DEFAULTS.arch, help=f"{', '.join(SPECS)} (default {DEFAULTS.arch}, the only one shipped)"
    )
    train.add_argument("--weights", type=Path, help="local weights file (needed for every arch but the default)")
    train.add_argument(
        "--size", type=int, help=f"image size in pixels, a multiple of {SIZE_STEP} (default {DEFAULTS.size})"
    )
    train.add_argument("--epochs", type=int, help=f"epochs after unfreezing (default {DEFAULTS.epochs})")
    train.add_argument(
        "--freeze-epochs", type=int, help=f"epochs training only the head first (default {DEFAULTS.freeze_epochs})"
    )
    train.add_argument(
        "--lr", type=float, help=f"base learning rate (default {DEFAULTS.lr:g}, or the finder's with --find-lr)"
    )
    train.add_argument("--find-lr", action="store_true", help="run the learning-rate finder first")
    train.add_argument("--batch-size", type=int, help=f"images per batch (default {DEFAULTS.batch_size})")
    train.add_argument("--no-promote", action="store_true", help="keep the new version as a candidate")
    train.set_defaults(handler=cmd_train)

    versions = commands.add_parser("versions", help="list model versions")
    versions.set_defaults(handler=cmd_versions)

    promote = commands.add_parser("promote", help="serve a model version (running servers switch within seconds)")
    promote.add_argument("version", metavar="VERSION")
    promote.set_defaults(handler=cmd_promote)

    rollback = commands.add_parser("rollback", help="serve again the version promoted before the current one")
    rollback.set_defaults(handler=cmd_promote, version=None)

    archive = commands.add_parser(
        "model-archive", help="write a model version as one zip: ONNX model, fastai export, classes, model card"
    )
    archive.add_argument("version", metavar="VERSION")
    archive.add_argument(
        "-o",
        "--output",
        dest="dest",  # checked against LOUPE_ALLOWED_ROOTS like every other path argument
        type=Path,
        default=Path("."),
        metavar="FILE",
        help="the zip to write, or a folder to write loupe-VERSION.zip into (default: the current folder)",
    )
    archive.set_defaults(handler=cmd_model_archive)

    score = commands.add_parser("score", help="embed new images and rank every label by how likely it is wrong")
    score.add_argument("--top", type=int, default=20, help="how many of the likeliest errors to print")
    score.set_defaults(handler=cmd_score)

    dupes = commands.add_parser("find-duplicates", help="pair up near-duplicate images by their embeddings")
    dupes.add_argument(
        "--threshold",
        type=float,
        default=SIMILARITY_THRESHOLD,
        help=f"cosine similarity that counts (default {SIMILARITY_THRESHOLD})",
    )
    dupes.add_argument("--top", type=int, default=20, help="how many pending pairs to print")
    dupes.set_defaults(handler=cmd_find_duplicates)

    worker = commands.add_parser(
        "worker",
        help="train queued runs in this process's machine (with LOUPE_TRAINING_WORKER=external on the servers)",
    )
    worker.add_argument("--poll-s", type=float, default=2.0, help="seconds between looks for queued runs")
    worker.add_argument("--once", action="store_true", help="train what is queued now, then exit")
    worker.set_defaults(handler=cmd_worker)

    pg_advice = (
        "SQLite is copied with its online backup API while the server runs. For PostgreSQL back up the "
        "database with `pg_dump -Fc DBNAME > loupe.dump` and restore it with `pg_restore --clean -d DBNAME "
        "loupe.dump`; these commands copy the data directory's files either way."
    )
    back = commands.add_parser("backup", help="back up the database and data files into a new folder", epilog=pg_advice)
    back.add_argument("dest", type=Path)
    back.set_defaults(handler=cmd_backup)

    rest = commands.add_parser("restore", help="restore a backup folder (stop the server first)", epilog=pg_advice)
    rest.add_argument("source", type=Path)
    rest.add_argument("--yes", action="store_true", help="really replace this instance's database and files")
    rest.set_defaults(handler=cmd_restore)

    as_user = {"dest": "as_user", "metavar": "NAME", "required": True, "help": "the account deciding (its role counts)"}
    queue = commands.add_parser("queue", help="print the review queue's likeliest wrong labels")
    queue.add_argument("--as", **as_user)
    queue.add_argument("--top", type=int, default=20, help="how many items to print")
    queue.set_defaults(handler=cmd_queue)

    decide = commands.add_parser("decide", help="record a review decision on an image, as the reviewer named")
    decide.add_argument("image", type=int, metavar="IMAGE_ID")
    decide.add_argument("action", choices=list(REVIEW_ACTIONS), metavar="ACTION", help=", ".join(REVIEW_ACTIONS))
    decide.add_argument("--label", help="the new label (for relabel)")
    decide.add_argument("--expected-last", type=int, help="refuse unless this is still the image's last decision")
    decide.add_argument("--as", **as_user)
    decide.set_defaults(handler=cmd_decide)

    undo = commands.add_parser("undo", help="take back the named reviewer's newest decision")
    undo.add_argument("--as", **as_user)
    undo.set_defaults(handler=cmd_undo)

    audit = commands.add_parser(
        "audit", help="draw a blind audit of unreviewed images, stratified by score band (admins)"
    )
    audit.add_argument("size", type=int, metavar="N", help="how many images to draw")
    audit.add_argument("--seed", type=int, help="the seed of the draw (default: a fresh one)")
    audit.add_argument("--as", **as_user)
    audit.set_defaults(handler=cmd_audit)

    stats = commands.add_parser("stats", help="print dataset counts and how clean the labels are")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=cmd_stats)

    studio = commands.add_parser("label-studio", help="connect Label Studio: Loupe as its ML backend")
    studio_commands = studio.add_subparsers(dest="label_studio_command", metavar="ACTION", required=True)
    studio_token = studio_commands.add_parser("token", help="make a token for a Label Studio; prints it once")
    studio_token.add_argument("name", metavar="NAME")
    studio_token.add_argument("--url", required=True, help="the Label Studio's address, e.g. http://localhost:8080")
    studio_token.add_argument("--as", **as_user)
    studio_token.set_defaults(handler=cmd_label_studio_token)
    studio_revoke = studio_commands.add_parser("revoke", help="revoke a token; Label Studio's next call is refused")
    studio_revoke.add_argument("name", metavar="NAME")
    studio_revoke.add_argument("--as", **as_user)
    studio_revoke.set_defaults(handler=cmd_label_studio_revoke)
    studio_status = studio_commands.add_parser("status", help="list tokens, connected projects and annotations")
    studio_status.add_argument("--as", **as_user)
    studio_status.set_defaults(handler=cmd_label_studio_status)

    hooks = commands.add_parser("hooks", help="event hooks: URLs that get a signed POST on promotions and failed runs")
    hook_commands = hooks.add_subparsers(dest="hooks_command", metavar="ACTION", required=True)
    hooks_add = hook_commands.add_parser("add", help="register a URL; prints its signing secret once")
    hooks_add.add_argument("url", metavar="URL")
    hooks_add.add_argument(
        "--event", dest="events", action="append", metavar="E", help="version.promoted or run.failed (default: both)"
    )
    hooks_add.add_argument(
        "--allow-private", action="store_true", help="allow loopback and private-network addresses (a receiver inside)"
    )
    hooks_add.set_defaults(handler=cmd_hooks_add)
    hook_commands.add_parser("list", help="list the hooks and recent failed deliveries").set_defaults(
        handler=cmd_hooks_list
    )
    hooks_remove = hook_commands.add_parser("remove", help="remove a hook; its pending deliveries are not sent")
    hooks_remove.add_argument("id", type=int, metavar="ID")
    hooks_remove.set_defaults(handler=cmd_hooks_remove)
    return parser


PATH_ARGUMENTS = ("paths", "files", "dest", "source")  # what import, import-urls, export, backup, restore take


def _check_paths(args: argparse.Namespace, settings: Settings) -> None:
    from labeling.instance.paths import require_inside

    for name in PATH_ARGUMENTS:
        value = getattr(args, name, None)
        for path in value if isinstance(value, list) else [value] if value is not None else []:
            require_inside(Path(path), settings.allowed_roots)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command (serve when none is given)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["serve", *(argv or [])])
    context = None
    try:
        settings = Settings.from_env()
        _check_paths(args, settings)  # before anything is opened or written
        # A predict-only process leaves the schema to the full app (and never loads Alembic).
        context = Context.open(settings, upgrade=not getattr(args, "predict_only", False))
        return args.handler(context, args)
    except LoupeError as error:  # a refusal the person can act on: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if context is not None:
            context.database.dispose()


if __name__ == "__main__":
    sys.exit(main())
