"""Eight experts at once over HTTP: no decision lost, none doubled, on SQLite and on PostgreSQL.

Seeds --images scored image rows (no files: the review API reads rows only), starts `server.py serve`
in its own process, and runs --experts concurrent clients, each taking the next item with
POST /api/queue/next and deciding it with POST /api/decisions (keep / relabel / delete), --decisions
times. Then it reads the decision log back:

- lost: a decision the server confirmed (200) that is not in the log;
- doubled: an image decided more than once, or a confirmed decision logged twice;
- refused: 409 answers (a stale view), which change nothing.

Last line: one JSON object; its top-level figures add both databases up (p99: the slower one).

    .venv/bin/python bench/stress_reviewers.py [--experts 8] [--decisions 500] [--postgres-url URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from common import (
    add_database_arguments,
    bench_databases,
    free_port,
    percentile_ms,
    print_table,
    start_server,
    stop_server,
)
from queue_scale import seed

from context import Context
from db import decisions as decision_db
from db import users as user_db
from labeling.ranking.scoring import scorer_name
from settings import Settings


def expert_client(base: str, auth: tuple[str, str], decisions: int, seed_: int, out: dict) -> None:
    """One expert: take the next item, decide it, until done or the queue is empty."""
    rng = random.Random(seed_)
    with httpx.Client(base_url=base, auth=auth, timeout=60) as client:
        while len(out["confirmed"]) < decisions:
            item = client.post("/api/queue/next").json()["item"]
            if item is None:
                break
            action = rng.choices(["keep", "relabel", "delete"], weights=[6, 3, 1])[0]
            body = {
                "image_id": item["image_id"],
                "action": action,
                "expected_last_decision_id": item["last_decision_id"],
            }
            if action == "relabel":
                body["new_label"] = item["predicted_label"]
            started = time.perf_counter()
            response = client.post("/api/decisions", json=body)
            out["latencies"].append(time.perf_counter() - started)
            if response.status_code == 200:
                out["confirmed"].append(response.json()["decision"]["id"])
            elif response.status_code == 409:
                out["refused"] += 1
                out.setdefault("first_refusal", response.json()["detail"])
            else:
                out["errors"].append(f"{response.status_code} {response.text[:200]}")


def run_on(settings: Settings, experts: int, decisions: int) -> dict:
    context = Context.open(settings)
    seed(context, experts * decisions + 500, scorer_name())
    accounts = [(f"expert{i}", f"password-{i}-long") for i in range(experts)]
    for name, password in accounts:
        user_db.add_user(context.database, name, "expert", password)
    port = free_port()
    server = start_server(settings, port)
    outs = [{"confirmed": [], "refused": 0, "errors": [], "latencies": []} for _ in accounts]
    try:
        threads = [
            threading.Thread(target=expert_client, args=(f"http://127.0.0.1:{port}", auth, decisions, i, out))
            for i, (auth, out) in enumerate(zip(accounts, outs, strict=True))
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        stop_server(server)
    log = decision_db.list_decisions(context.database)
    context.database.dispose()

    confirmed = [decision_id for out in outs for decision_id in out["confirmed"]]
    logged_ids = Counter(row.id for row in log)
    per_image = Counter(row.image_id for row in log)
    latencies = [t for out in outs for t in out["latencies"]]
    return {
        "decisions": len(confirmed),
        "lost": sum(1 for decision_id in confirmed if decision_id not in logged_ids),
        "doubled": sum(1 for n in per_image.values() if n > 1) + sum(1 for n in logged_ids.values() if n > 1),
        "refused": sum(out["refused"] for out in outs),
        "errors": sum(len(out["errors"]) for out in outs),
        "p50_ms": round(percentile_ms(latencies, 50), 1),
        "p99_ms": round(percentile_ms(latencies, 99), 1),
        "decisions_per_s": round(len(confirmed) / elapsed, 1),
        "first_error": next((e for out in outs for e in out["errors"]), None),
        "first_refusal": next((out["first_refusal"] for out in outs if "first_refusal" in out), None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--decisions", type=int, default=500)
    add_database_arguments(parser)
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as temp:
        for name, settings in bench_databases(Path(temp), args):
            results[name] = run_on(settings, args.experts, args.decisions)

    keys = ["decisions", "lost", "doubled", "refused", "errors", "p50_ms", "p99_ms", "decisions_per_s"]
    print_table(
        f"{args.experts} experts × {args.decisions} decisions over HTTP",
        ["database", *keys],
        [[name, *(r[key] for key in keys)] for name, r in results.items()],
    )
    for name, r in results.items():
        for what in ("first_error", "first_refusal"):
            if r[what]:
                print(f"{name}: {what.replace('_', ' ')}: {r[what]}")
    summary = {key: sum(r[key] for r in results.values()) for key in ("decisions", "lost", "doubled", "refused")}
    summary["p99_ms"] = max(r["p99_ms"] for r in results.values())
    print(json.dumps({**summary, **{name: r for name, r in results.items()}}))


if __name__ == "__main__":
    main()
