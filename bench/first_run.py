"""From an empty data folder to a model that answers, with nobody clicking anything.

Runs `loupe demo` (the handwritten digits) and then `loupe serve` with the default loop policy, each as
its own process on a fresh temporary data folder, and watches the database and the HTTP API for:

- seconds_to_ranked: every active image has a score in the pass the queue reads (the quick loop);
- seconds_to_first_version: a model version is promoted (the first-model policy trained it by itself);
- seconds_to_first_prediction: `POST /api/predict` answers with that version;
- seconds_from_ranked_to_first_version: the first model is a head on the ranking's embeddings, so it
  follows the first ranking; with --finetune, the loop's first fine-tune after it and the gate's verdict.

Seconds count from the start of `loupe serve` (the import before it is reported as import_seconds).
While waiting, it prints what /api/predict says instead of a prediction (the first model's progress).
Last line: one JSON object.

    .venv/bin/python bench/first_run.py [--timeout 1800] [--keep] [--finetune]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import ROOT, open_instance

from db import model_versions as version_db
from db import runs as run_db
from db.scores import count_scores
from db.stats import dataset_stats
from labeling.ranking.scoring import serving_pass


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loupe(data_dir: Path, *args: str, log: Path | None = None) -> subprocess.Popen:
    """`.venv/bin/loupe ARGS` on data_dir with the default settings (the scheduler on)."""
    env = {**os.environ, "LOUPE_DATA_DIR": str(data_dir), "GRADIO_ANALYTICS_ENABLED": "False"}
    for name in ("DATABASE_URL", "LOUPE_SCHEDULER", "LOUPE_SCHEDULER_TICK_S", "LOUPE_RETRAIN_CHECK_S"):
        env.pop(name, None)  # the defaults, as a newcomer gets them
    out = log.open("w") if log else subprocess.DEVNULL
    return subprocess.Popen([str(ROOT / ".venv" / "bin" / "loupe"), *args], env=env, cwd=ROOT, stdout=out, stderr=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds of serving")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    parser.add_argument(
        "--finetune", action="store_true", help="then wait for the loop's first fine-tune and report the gate's verdict"
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="loupe-first-run-"))
    data_dir = root / "data"
    started = time.monotonic()
    demo = loupe(data_dir, "demo", log=root / "demo.log")
    if demo.wait() != 0:
        sys.exit(f"loupe demo failed:\n{(root / 'demo.log').read_text()[-3000:]}")
    import_seconds = time.monotonic() - started

    context = open_instance(data_dir, scheduler=False)
    stats = dataset_stats(context.database)
    sample = next(data_dir.joinpath("images").rglob("*.png"), None) or next(
        p for p in data_dir.joinpath("images").rglob("*") if p.is_file()
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve_started = time.monotonic()
    server = loupe(data_dir, "serve", "--port", str(port), log=root / "serve.log")
    marks: dict[str, float] = {}
    said_gist, said_at = "", 0.0
    version = None
    try:
        deadline = serve_started + args.timeout
        while len(marks) < 3:
            if time.monotonic() > deadline:
                print(f"gave up after {args.timeout:.0f} s of serving; reached: {sorted(marks) or 'nothing'}")
                break
            if server.poll() is not None:
                raise RuntimeError(f"loupe serve ended:\n{(root / 'serve.log').read_text()[-3000:]}")
            now = time.monotonic() - serve_started
            if "ranked" not in marks:
                ranking = serving_pass(context)
                if ranking and count_scores(context.database, ranking["scorer"]) >= stats.active:
                    marks["ranked"] = now
                    print(f"{now:7.1f} s  every image ranked ({ranking['scorer']})", flush=True)
            if "version" not in marks:
                promoted = version_db.promoted_version(context.database)
                if promoted is not None:
                    version = promoted.version
                    marks["version"] = now
                    print(f"{now:7.1f} s  {version} promoted", flush=True)
            if "prediction" not in marks:
                try:
                    answer = httpx.post(f"{base}/api/predict", files={"file": (sample.name, sample.read_bytes())})
                except httpx.HTTPError:
                    answer = None  # not listening yet
                if answer is not None and answer.status_code == 200 and answer.json()["model_version"] == version:
                    marks["prediction"] = now
                    print(f"{now:7.1f} s  /api/predict answers with {version}", flush=True)
                elif answer is not None and answer.status_code == 409:
                    sentence = answer.json()["detail"]
                    gist = sentence.split(", about")[0].split(", estimating")[0].split(" (")[0]
                    if gist != said_gist or now - said_at > 30:  # a new phase or epoch, or every 30 s
                        print(f"{now:7.1f} s  /api/predict: {sentence}", flush=True)
                        said_gist, said_at = gist, now
            time.sleep(0.5)
        while args.finetune and time.monotonic() < deadline:  # the fine-tune the loop starts after the head
            finetune = next((r for r in run_db.list_runs(context.database) if r.kind == "finetune"), None)
            if finetune is not None and finetune.status not in run_db.ACTIVE_STATUSES:
                marks["finetune"] = time.monotonic() - serve_started
                gate = finetune.metrics.get("gate") or {}
                print(
                    f"{marks['finetune']:7.1f} s  fine-tune run {finetune.id} {finetune.status}: {gate.get('reason')}"
                )
                break
            time.sleep(2)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    runs = run_db.list_runs(context.database)
    first = runs[-1] if runs else None
    finetune = next((r for r in runs if r.kind == "finetune"), None)
    context.database.dispose()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    result = {  # null: not reached within --timeout
        "seconds_to_ranked": round(marks["ranked"], 1) if "ranked" in marks else None,
        "seconds_to_first_version": round(marks["version"], 1) if "version" in marks else None,
        "seconds_to_first_prediction": round(marks["prediction"], 1) if "prediction" in marks else None,
        "seconds_from_ranked_to_first_version": round(marks["version"] - marks["ranked"], 1)
        if {"version", "ranked"} <= set(marks)
        else None,
        "timed_out": len(marks) < 3,
        "import_seconds": round(import_seconds, 1),
        "images": stats.active,
        "version": version,
        "run_trigger": first.trigger if first else None,
        "run_kind": first.kind if first else None,
        "run_seconds": round(first.seconds, 1) if first and first.seconds else None,
        "run_status": first.status if first else None,
        "run_progress": {k: first.progress.get(k) for k in ("phase", "epoch", "batch", "n_batches")} if first else None,
        "run_params": {k: first.params.get(k) for k in ("size", "freeze_epochs", "epochs")} if first else None,
        "device": first.device if first and first.device else "cpu",
        "finetune": {
            "status": finetune.status,
            "seconds": round(finetune.seconds, 1) if finetune.seconds else None,
            "error": (finetune.metrics.get("gate") or {}).get("candidate_error"),
            "head_baseline_error": (finetune.metrics.get("gate") or {}).get("baseline_error"),
            "promoted": (finetune.metrics.get("gate") or {}).get("promote"),
        }
        if finetune
        else None,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
