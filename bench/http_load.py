"""HTTP load with hot swaps: 16 concurrent loopback clients POST /api/predict while 3 promotions happen.

Starts `server.py serve` on a temporary data directory holding four model versions, sends a fixed
number of requests, promotes v2, v3, v4 at 25/50/75% of them, and checks every answer: no errors,
and each answer's version was the promoted one at some moment while the request was in flight
(allowing the server's swap delay). Last line: one JSON object.

With --scheduled the promotion is the scheduler's instead: the server runs its loop, one expert
decision reaches the policy's retrain threshold (1), the scheduler starts a real training run on
the demo digits (64 px, one frozen epoch) in a worker process, the gate promotes it, and the load
goes on until 300 answers came from the new version.

With --processes N (N >= 2), in one run on one data directory (SQLite; the processes share the file):
the full app (`serve`, scheduler off) with no model promoted, its resident memory after a few visits to /
and /api/health (`rss_mb_full_app`), then with v1 loaded and 20 predictions (`rss_mb_full_app_model`);
then `serve --predict-only --workers 1` and `--workers N`, each under the load above with v1 promoted
again first and v2, v3, v4 at 25/50/75%: requests/s, p50/p99, errors and stale answers (same rule), and
each process's resident memory after the load (a model loaded; VmRSS from /proc, VmHWM as the peak).
--clients is per process: N processes get N x clients connections, so that the one client process
keeps them all busy. Requests per process are counted exactly, with nothing added to the server: each
answer's connection (its local port) is matched, through /proc/net/tcp and the socket descriptors each
worker holds, to the worker that accepted it; `cpu share` is each worker's CPU time over the run's wall
time. The client is one Python process on the same machine and shares its cores with the servers
(`client_cpu_share_n`), so `scaling` is bounded by the cores the servers get, not by the servers alone.

    .venv/bin/python bench/http_load.py [--requests 2000] [--clients 16] [--scheduled]
    .venv/bin/python bench/http_load.py --processes 2 [--requests 2000] [--clients 16]
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

SETTLE_S = 3.0  # after the load, before the "settled" memory reading
SWAP_GRACE_S = 5.0  # the server polls the promoted version every 2 s, then loads and warms it


async def drive(
    url: str, total: int, clients: int, payload: bytes, on_count, stop=lambda results: False, at_end=lambda: None
):
    """Send up to total requests from clients concurrent keep-alive connections; at_end runs while they are
    still open. Returns (start, end, status, version, client port) per request."""
    results: list[tuple] = []

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
                results.append((start, time.monotonic(), response.status_code, version, client_port(response)))
            except httpx.HTTPError as error:
                results.append((start, time.monotonic(), type(error).__name__, None, None))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
        at_end()
    return results


def client_port(response: httpx.Response) -> int | None:
    """The local port of the connection that carried response (which server process answered, via /proc)."""
    stream = response.extensions.get("network_stream")
    address = stream.get_extra_info("client_addr") if stream is not None else None
    return address[1] if address else None


def stale_answers(results: list[tuple], timeline: list[tuple[float, str]]) -> list[tuple]:
    """Answers whose version was not the promoted one at any moment while the request was in flight, allowing
    SWAP_GRACE_S after each promotion for the old version to keep answering."""

    def allowed(start: float, end: float) -> set[str]:
        names = set()
        for index, (promoted_at, name) in enumerate(timeline):
            superseded_at = timeline[index + 1][0] if index + 1 < len(timeline) else float("inf")
            if promoted_at <= end and superseded_at + SWAP_GRACE_S >= start:
                names.add(name)
        return names

    return [r for r in results if r[2] == 200 and r[3] not in allowed(r[0], r[1])]


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


def proc_status_mb(pid: int, field: str) -> float:
    """A memory field of /proc/PID/status (VmRSS: resident now, VmHWM: resident at its peak), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # the kernel writes kB
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def child_pids(pid: int) -> list[int]:
    """The process's direct children, from every thread's children list."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return sorted(children)


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    return [pid] + [p for child in child_pids(pid) for p in process_tree(child)]


def server_processes(server_pid: int, workers: int) -> list[int]:
    """The processes that answer requests: the server itself with one worker, else uvicorn's worker children
    (not multiprocessing's resource tracker, should one run)."""
    if workers == 1:
        return [server_pid]
    return [c for c in child_pids(server_pid) if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def connection_owners(pids: list[int], port: int) -> dict[int, int]:
    """{client port: pid} for each open loopback connection to port, by matching the server sockets of
    /proc/net/tcp with the socket descriptors each process holds."""
    inode_to_client_port = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, remote_port = int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # ESTABLISHED
                inode_to_client_port[fields[9]] = remote_port
    owners = {}
    for pid in pids:
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(descriptor)
            except OSError:  # closed while we looked
                continue
            if target.startswith("socket:[") and target[8:-1] in inode_to_client_port:
                owners[inode_to_client_port[target[8:-1]]] = pid
    return owners


def wait_for_every_process(server_pid: int, workers: int, base: str, port: int, version: str) -> list[int]:
    """Until each of the server's processes has answered /api/health with version (each on a new connection,
    which the kernel hands to whichever process accepts first); returns their pids."""
    deadline = time.monotonic() + 120
    answered: set[int] = set()
    while True:
        pids = server_processes(server_pid, workers)
        if len(pids) == workers:
            with httpx.Client(timeout=10) as session:
                response = session.get(f"{base}/api/health")
                if response.json()["model_version"] == version:
                    answered.add(connection_owners(pids, port).get(client_port(response)))
            if answered >= set(pids):
                return pids
        if time.monotonic() > deadline:
            raise RuntimeError(f"{workers - len(answered & set(pids))} of {workers} processes never answered")
        time.sleep(0.05)


def measure_predict_processes(context, port: int, workers: int, clients: int, total: int, payload: bytes) -> dict:
    """`serve --predict-only --workers N` under the load while v2, v3, v4 are promoted, after v1 again."""
    versions = ["v1", "v2", "v3", "v4"]
    version_db.promote(context.database, versions[0])
    timeline = [(time.monotonic(), versions[0])]
    server = start_server(
        context.settings, port, ("--predict-only", "--workers", str(workers)), LOUPE_PREDICT_RATE_PER_S="0"
    )
    owners: dict[int, int] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        pids = wait_for_every_process(server.pid, workers, base, port, versions[0])
        swap_at = {total * k // 4: name for k, name in zip((1, 2, 3), versions[1:], strict=True)}

        def on_count(index: int) -> None:
            if index in swap_at:
                version_db.promote(context.database, swap_at[index])
                timeline.append((time.monotonic(), swap_at[index]))

        rss_ready = [proc_status_mb(pid, "VmRSS") for pid in pids]  # v1 loaded, no request predicted yet
        cpu_before = {pid: cpu_seconds(pid) for pid in pids}
        started, client_cpu = time.monotonic(), time.process_time()
        results = asyncio.run(
            drive(
                f"{base}/api/predict",
                total,
                clients,
                payload,
                on_count,
                at_end=lambda: owners.update(connection_owners(pids, port)),
            )
        )
        elapsed, client_cpu = time.monotonic() - started, time.process_time() - client_cpu
        cpu = {pid: cpu_seconds(pid) - cpu_before[pid] for pid in pids}
        rss = [proc_status_mb(pid, "VmRSS") for pid in pids]  # after the load: a model loaded, three swaps done
        peak = [proc_status_mb(pid, "VmHWM") for pid in pids]
        supervisor = proc_status_mb(server.pid, "VmRSS") if workers > 1 else None
        time.sleep(SETTLE_S)  # a predict-only process hands freed memory back at each model poll (2 s)
        settled = [proc_status_mb(pid, "VmRSS") for pid in pids]
    finally:
        stop_server(server)
    latencies = [r[1] - r[0] for r in results]
    answered_by = [sum(1 for r in results if owners.get(r[4]) == pid) for pid in pids]
    return {
        "requests": len(results),
        "clients": clients,
        "errors": sum(1 for r in results if r[2] != 200),
        "stale": len(stale_answers(results, timeline)),
        "swaps": len(timeline) - 1,
        "rps": len(results) / elapsed,
        "rps_each": [count / elapsed for count in answered_by],
        "unattributed": len(results) - sum(answered_by),
        "cpu_share_each": [cpu[pid] / elapsed for pid in pids],
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "rss_mb_each": rss,
        "rss_mb_ready_each": rss_ready,
        "rss_peak_mb_each": peak,
        "rss_mb_settled_each": settled,
        "rss_mb_supervisor": supervisor,
        "client_cpu_share": client_cpu / elapsed / (os.cpu_count() or 1),
    }


def measure_full_app(context, port: int, payload: bytes) -> dict:
    """`serve` (the scheduler off) with no model promoted, after a few visits to / and /api/health; then with
    v1 promoted, loaded and asked 20 predictions. Resident memory of its process (and of children, if any)."""
    server = start_server(context.settings, port, LOUPE_PREDICT_RATE_PER_S="0")
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=60) as session:
            for _ in range(5):
                session.get(f"{base}/").raise_for_status()
                session.get(f"{base}/api/health").raise_for_status()
            no_model = proc_status_mb(server.pid, "VmRSS")
            children = sum(proc_status_mb(pid, "VmRSS") for pid in process_tree(server.pid)[1:])
            version_db.promote(context.database, "v1")
            wait_for_version(base, "v1")
            for _ in range(20):
                session.post(f"{base}/api/predict", files={"file": ("x.jpg", payload, "image/jpeg")}).raise_for_status()
            with_model = proc_status_mb(server.pid, "VmRSS")
    finally:
        stop_server(server)
    return {"no_model": no_model, "with_model": with_model, "children": children}


def run_processes(args) -> None:
    """--processes N: the full app's memory, then 1 and N predict-only processes under the same load."""
    payload = sample_jpeg()
    with tempfile.TemporaryDirectory() as temp:
        context = open_instance(Path(temp) / "data")
        for seed, name in enumerate(["v1", "v2", "v3", "v4"]):
            write_head_only_version(context, name, [str(d) for d in range(10)], args.size, seed=seed)
        full = measure_full_app(context, free_port(), payload)
        one = measure_predict_processes(context, free_port(), 1, args.clients, args.requests, payload)
        many = measure_predict_processes(
            context, free_port(), args.processes, args.clients * args.processes, args.requests, payload
        )
        context.database.dispose()

    threads = int(os.environ.get("LOUPE_PREDICT_THREADS", context.settings.predict_threads))  # as the servers read it
    print_table(
        f"POST /api/predict over loopback, 500x375 JPEG, {args.size} px, v1 then v2, v3, v4 promoted; "
        f"serve --predict-only, {threads} ONNX threads per process; {os.cpu_count()} cores shared with the client",
        ["processes", "clients", "requests", "errors", "stale", "rps", "p50 ms", "p99 ms", "client cpu"],
        [
            [n, m["clients"], m["requests"], m["errors"], m["stale"], m["rps"], m["p50_ms"], m["p99_ms"]]
            + [m["client_cpu_share"]]
            for n, m in ((1, one), (args.processes, many))
        ],
    )
    print_table(
        "Each predict-only process (requests counted by the connection that carried them)",
        ["processes", "process", "rps", "cpu share", "RSS MB ready", "RSS MB after", "RSS MB 3 s later", "peak RSS MB"],
        [
            [n, index + 1, m["rps_each"][index], m["cpu_share_each"][index]]
            + [m["rss_mb_ready_each"][index], m["rss_mb_each"][index], m["rss_mb_settled_each"][index]]
            + [m["rss_peak_mb_each"][index]]
            for n, m in ((1, one), (args.processes, many))
            for index in range(n)
        ],
    )
    print_table(
        "Resident memory, MB",
        ["full app, no model", "full app, v1 loaded", "full app's children", "predict process (max)", "supervisor"],
        [
            [full["no_model"], full["with_model"], full["children"], max(one["rss_mb_each"] + many["rss_mb_each"])]
            + [many["rss_mb_supervisor"]]
        ],
    )
    print(
        json.dumps(
            {
                "processes": args.processes,
                "rps_1": round(one["rps"], 1),
                "rps_n": round(many["rps"], 1),
                "scaling": round(many["rps"] / one["rps"], 2),
                "rps_each_n": [round(r, 1) for r in many["rps_each"]],
                "unattributed": one["unattributed"] + many["unattributed"],
                "errors": one["errors"] + many["errors"],
                "stale_versions": one["stale"] + many["stale"],
                "swaps": min(one["swaps"], many["swaps"]),
                "p50_ms_1": round(one["p50_ms"], 1),
                "p99_ms_1": round(one["p99_ms"], 1),
                "p50_ms_n": round(many["p50_ms"], 1),
                "p99_ms_n": round(many["p99_ms"], 1),
                "rss_mb_predict_process": round(max(one["rss_mb_each"] + many["rss_mb_each"]), 1),
                "rss_mb_predict_each": [round(r, 1) for r in many["rss_mb_each"]],
                "rss_mb_predict_ready": round(max(one["rss_mb_ready_each"] + many["rss_mb_ready_each"]), 1),
                "rss_mb_predict_peak": round(max(one["rss_peak_mb_each"] + many["rss_peak_mb_each"]), 1),
                "rss_mb_predict_settled": round(max(one["rss_mb_settled_each"] + many["rss_mb_settled_each"]), 1),
                "rss_mb_supervisor": round(many["rss_mb_supervisor"], 1),
                "rss_mb_full_app": round(full["no_model"], 1),
                "rss_mb_full_app_model": round(full["with_model"], 1),
                "requests": one["requests"] + many["requests"],
                "clients": args.clients,
                "clients_n": many["clients"],
                "predict_threads": threads,
                "client_cpu_share_n": round(many["client_cpu_share"], 2),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--scheduled", action="store_true")
    parser.add_argument("--processes", type=int, default=None, help="N >= 2: 1 and N predict-only processes")
    args = parser.parse_args()
    if args.processes is not None:
        if args.processes < 2 or args.scheduled:
            parser.error("--processes takes N >= 2, and not with --scheduled")
        run_processes(args)
        return

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

    errors = [r for r in results if r[2] != 200]
    stale = stale_answers(results, timeline)
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
