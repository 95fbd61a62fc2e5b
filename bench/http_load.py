"""HTTP load with hot swaps: 16 concurrent loopback clients POST /api/predict while 3 promotions happen.

Starts `server.py serve` on a temporary data directory holding four model versions, sends a fixed
number of requests, promotes v2, v3, v4 at 25/50/75% of them, and checks every answer: no errors,
and each answer's version was the promoted one at some moment while the request was in flight
(allowing the server's swap delay). Last line: one JSON object.

With --scheduled the promotion is the scheduler's instead: the server runs its loop, one expert
decision reaches the policy's retrain threshold (1), the scheduler starts a real training run on
the demo digits (64 px, one frozen epoch) in a worker process, the gate promotes it, and the load
goes on until 300 answers came from the new version.

    .venv/bin/python bench/http_load.py [--requests 2000] [--clients 16] [--scheduled]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import httpx
from common import (
    free_port,
    open_instance,
    percentile_ms,
    print_table,
    sample_jpeg,
    start_server,
    stop_server,
    write_head_only_version,
)

from db import model_versions as version_db
from db.schema import as_utc

SWAP_GRACE_S = 5.0  # the server polls the promoted version every 2 s, then loads and warms it


async def drive(url: str, total: int, clients: int, payload: bytes, on_count, stop=lambda results: False):
    results: list[tuple] = []  # (start, end, status, version)

    def indices():
        index = 0
        while index < total and not stop(results):
            yield index
            index += 1

    counter = indices()

    async def client(session: httpx.AsyncClient):
        for index in counter:
            on_count(index)
            start = time.monotonic()
            try:
                response = await session.post(url, files={"file": ("x.jpg", payload, "image/jpeg")})
                version = response.json().get("model_version") if response.status_code == 200 else None
                results.append((start, time.monotonic(), response.status_code, version))
            except httpx.HTTPError as error:
                results.append((start, time.monotonic(), type(error).__name__, None))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return results


def wait_for_version(base: str, version: str) -> None:
    """Until the server answers with version (it loads the promoted version in the background)."""
    deadline = time.monotonic() + 120
    while httpx.get(f"{base}/api/health", timeout=10).json()["model_version"] != version:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not load {version}")
        time.sleep(0.3)


def prepare_scheduled(context):
    """Demo digits, a head-only v0, an expert, a policy that retrains after one decision; returns that decision."""
    from db import users as user_db
    from labeling import review
    from labeling.imports.demo import import_demo
    from training.scheduler import LoopPolicy, save_policy

    import_demo(context)
    write_head_only_version(context, "v0", [str(d) for d in range(10)], 64)
    version_db.promote(context.database, "v0")
    save_policy(
        context,
        LoopPolicy(quick_loop=False, retrain_after_decisions=1, freeze_epochs=1, epochs=0, size=64, tolerance=1.0),
    )
    expert = user_db.add_user(context.database, "bench-expert", "expert", "bench-password")
    return lambda: review.decide_on_current(context, expert, 1, "keep")


def promotion_timeline(context, wall_to_monotonic: float) -> list[tuple[float, str]]:
    """(monotonic time, version) of each promotion, read back from the database."""
    rows = [v for v in version_db.list_versions(context.database) if v.promoted_at is not None]
    rows.sort(key=lambda v: v.promoted_at)
    return [(as_utc(v.promoted_at).timestamp() - wall_to_monotonic, v.version) for v in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--scheduled", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        data_dir = Path(temp) / "data"
        context = open_instance(data_dir)
        first = "v0" if args.scheduled else "v1"
        timeline = [(time.monotonic(), first)]
        if args.scheduled:
            decide = prepare_scheduled(context)
        else:
            versions = ["v1", "v2", "v3", "v4"]
            for seed, name in enumerate(versions):
                write_head_only_version(context, name, [str(d) for d in range(10)], args.size, seed=seed)
            version_db.promote(context.database, "v1")
        port = free_port()
        server = start_server(
            context.settings,
            port,
            LOUPE_SCHEDULER="1" if args.scheduled else "0",
            LOUPE_RETRAIN_CHECK_S="1",
            LOUPE_PREDICT_RATE_PER_S="0",  # the load comes from one address on purpose
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_version(base, first)
            payload = sample_jpeg()
            if args.scheduled:
                total = 10**9

                def on_count(index: int) -> None:
                    if index == 0:
                        decide()  # the scheduler takes it from here

                def stop(results) -> bool:
                    return sum(1 for r in results if r[3] not in (None, first)) >= 300
            else:
                total = args.requests
                swap_at = {args.requests * k // 4: name for k, name in zip((1, 2, 3), versions[1:], strict=True)}

                def on_count(index: int) -> None:
                    if index in swap_at:
                        version_db.promote(context.database, swap_at[index])
                        timeline.append((time.monotonic(), swap_at[index]))

                def stop(results) -> bool:
                    return False

            started, client_cpu = time.monotonic(), time.process_time()
            results = asyncio.run(drive(f"{base}/api/predict", total, args.clients, payload, on_count, stop))
            elapsed, client_cpu = time.monotonic() - started, time.process_time() - client_cpu
            if args.scheduled:
                timeline = promotion_timeline(context, time.time() - time.monotonic())
        finally:
            stop_server(server)
        context.database.dispose()

    def allowed(start: float, end: float) -> set[str]:
        names = set()
        for index, (promoted_at, name) in enumerate(timeline):
            superseded_at = timeline[index + 1][0] if index + 1 < len(timeline) else float("inf")
            if promoted_at <= end and superseded_at + SWAP_GRACE_S >= start:
                names.add(name)
        return names

    errors = [r for r in results if r[2] != 200]
    stale = [r for r in results if r[2] == 200 and r[3] not in allowed(r[0], r[1])]
    answered = [r[3] for r in results if r[3]]
    latencies = [r[1] - r[0] for r in results]
    rows = [
        [
            len(results),
            args.clients,
            len(errors),
            len(stale),
            len(results) / elapsed,
            percentile_ms(latencies, 50),
            percentile_ms(latencies, 99),
            sorted(set(answered)),
        ]
    ]
    print_table(
        "POST /api/predict over loopback, 500x375 JPEG",
        ["requests", "clients", "errors", "stale", "rps", "p50 ms", "p99 ms", "versions answered"],
        rows,
    )
    print(
        json.dumps(
            {
                "requests": len(results),
                "errors": len(errors),
                "stale_versions": len(stale),
                "rps": round(len(results) / elapsed, 1),
                "p99_ms": round(percentile_ms(latencies, 99), 1),
                "swaps": len(timeline) - 1,
                "promoted_by": "scheduler" if args.scheduled else "bench",
                "client_cpu_share": round(client_cpu / elapsed / (os.cpu_count() or 1), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
