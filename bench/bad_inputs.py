"""Bad inputs and every door of a running server: each attack must be refused cleanly and change nothing.

Starts `server.py serve` on an instance with a few images, two accounts and a served model, then sends
(1) Loupe's own corpus: truncated JPEG/PNG, empty files, a 200-Mpixel PNG, HTML named .jpg, a TIFF, an
oversize upload, loopback / private / link-local / non-http URLs, bad or stale decisions, calls without a
login or with the wrong role, admin uploads of bad files and a zip-slip zip; and (2) the framework's
doors, found from the running app: every event of both pages (from their /config) gets a client file
path to the database, and every file-taking event an 8000×8000 PNG, a 300-frame GIF and HTML; Gradio's
file route is asked for the database, /etc/passwd and the other page's copies, anonymous and as an
expert; closed framework routes; chunked bodies past the caps; sessions after a password reset and a
disabled account. A case is refused cleanly when the answer is the expected 4xx (or Gradio error)
with a plain sentence: no 500, no stack trace, no server path. Leaks: a copy of the database anywhere
under the web folders, or its bytes in an answer. Then the server's memory growth and the CPU it uses
idle with nobody connected. The database is compared before and after (row counts of every table and
the dataset's counts); the import log and the sessions the bench opens are left out. Runs on SQLite
and, when it answers, on PostgreSQL. Last line: one JSON object.

    .venv/bin/python bench/bad_inputs.py [--postgres-url URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

import httpx
from common import (
    add_database_arguments,
    bench_databases,
    free_port,
    print_table,
    start_server,
    stop_server,
    write_head_only_version,
)
from gradio_client import Client, handle_file
from PIL import Image

from context import Context
from db import model_versions as version_db
from db import users as user_db
from db.stats import dataset_stats, table_counts
from labeling.imports.ingest import import_paths
from settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from web_doors import (  # noqa: E402 — the tests' door helpers, shared so both knock the same way
    animated_gif,
    client_path,
    events,
    files_holding,
    large_png,
    login,
    run_event,
    uploaded,
)

CLOSED = ["/gradio_api/proxy=http://example.com/x", "/gradio_api/file=http://example.com/x.png", "/monitoring/summary",
          "/gradio_api/process_recording", "/gradio_api/run-history/records", "/gradio_api/vibe-code"]  # fmt: skip

ADMIN, EXPERT = ("bench-admin", "admin-password"), ("bench-expert", "expert-password")
LOG_TABLES = ("import_batches", "import_rejections", "web_sessions")


def png(size=(40, 30), color=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 120, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


def bomb_png() -> bytes:
    """A 14,143 × 14,143 one-bit PNG: 200 million pixels in a few tens of kilobytes."""
    buffer = io.BytesIO()
    Image.new("1", (14_143, 14_143)).save(buffer, "PNG")
    return buffer.getvalue()


def tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buffer, "TIFF")
    return buffer.getvalue()


def zip_slip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../escape.png", png())
        archive.writestr("/etc/cron.d/evil.png", png(color=(1, 2, 3)))
    return buffer.getvalue()


def fingerprint(context: Context) -> dict:
    return {
        "rows": table_counts(context.database, skip=LOG_TABLES),
        "stats": {k: v for k, v in asdict(dataset_stats(context.database)).items() if k != "rejected"},
        "users": [(u.name, u.role, u.disabled) for u in user_db.list_users(context.database)],
        "versions": [(v.version, v.status) for v in version_db.list_versions(context.database)],
    }


def http_cases(base: str, files_dir: Path, max_bytes: int) -> list[tuple[str, set[int], httpx.Response]]:
    """(case, acceptable statuses, response) for every REST case."""
    uploads = {
        "empty file": b"",
        "truncated PNG": png()[:60],
        "truncated JPEG": jpeg()[:200],
        "HTML named .jpg": b"<!doctype html><html><body>not a photo</body></html>",
        "200-Mpixel PNG": bomb_png(),
        "TIFF": tiff(),
        "oversize upload": b"\xff\xd8" + b"\0" * (max_bytes + 10),
    }
    expected = {"200-Mpixel PNG": {413}, "oversize upload": {413}}
    cases = []
    for name, data in uploads.items():
        response = httpx.post(f"{base}/api/predict", files={"file": ("x.jpg", data, "image/jpeg")}, timeout=60)
        cases.append((f"predict: {name}", expected.get(name, {400}), response))
    for url in [
        f"{base}/api/health",
        "http://10.0.0.1/cat.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/cat.jpg",
        "file:///etc/passwd",
        "ftp://example.com/cat.jpg",
        "http://",
    ]:
        response = httpx.get(f"{base}/api/classify-url", params={"url": url}, timeout=30)
        cases.append((f"classify-url: {url}", {400}, response))
    decisions = f"{base}/api/decisions"
    cases += [
        ("queue without login", {401}, httpx.get(f"{base}/api/queue")),
        ("decision without login", {401}, httpx.post(decisions, json={"image_id": 1, "action": "delete"})),
        ("wrong password", {401}, httpx.get(f"{base}/api/queue", auth=(EXPERT[0], "guess-guess"))),
        ("unknown action", {422}, httpx.post(decisions, auth=EXPERT, json={"image_id": 1, "action": "burn"})),
        (
            "label with a slash",
            {400},
            httpx.post(decisions, auth=EXPERT, json={"image_id": 1, "action": "relabel", "new_label": "a/b"}),
        ),
        ("missing image", {409}, httpx.post(decisions, auth=EXPERT, json={"image_id": 99999, "action": "keep"})),
        (
            "stale view",
            {409},
            httpx.post(
                decisions, auth=EXPERT, json={"image_id": 1, "action": "delete", "expected_last_decision_id": 12345}
            ),
        ),
        ("nothing to undo", {400}, httpx.post(decisions, auth=EXPERT, json={"action": "undo"})),
    ]
    return cases


def gradio_cases(base: str, files_dir: Path) -> list[tuple[str, bool, str]]:
    """(case, refused cleanly, what came back) for the Gradio cases."""
    for name, data in {"page.jpg": b"<html>hi</html>", "slip.zip": zip_slip(), "cut.png": png()[:50]}.items():
        (files_dir / name).write_bytes(data)
    expert = Client(f"{base}/review/", auth=EXPERT, verbose=False)
    admin = Client(f"{base}/review/", auth=ADMIN, verbose=False)
    public = Client(f"{base}/", verbose=False)
    page = handle_file(str(files_dir / "page.jpg"))
    calls = [
        ("expert uploads for admin_upload", expert, "403 Forbidden", ([page], "x"), "/admin_upload"),  # the door
        ("expert calls admin_upload", expert, "admin role", ([], "x"), "/admin_upload"),  # the handler
        ("expert calls retrain_now", expert, "admin role", (1, 1, "", False), "/retrain_now"),
        ("expert calls promote_version", expert, "admin role", ("v1",), "/promote_version"),
        ("expert calls add_user", expert, "admin role", ("mallory", "admin", "mallory-password"), "/add_user"),
        ("expert calls admin_purge", expert, "admin role", ([1],), "/admin_purge"),
        ("expert calls disable_user", expert, "admin role", (ADMIN[0], ""), "/disable_user"),
        ("admin: bad user name", admin, "needs a name", ("  ", "expert", "password-123"), "/add_user"),
        ("admin: unknown version", admin, "no version", ("v404",), "/promote_version"),
        ("admin: bad schedule", admin, "crontab", (True, 20, 0, "every night", 0.01, 1, 2, 128), "/save_loop_policy"),
        # The Predict event gets the raw upload; Loupe's checked decode refuses it in Loupe's words.
        ("public predict: HTML file", public, "cannot be used", (page,), "/predict"),
    ]  # fmt: skip
    results = []
    for name, client, phrase, args, api_name in calls:
        try:
            answer = client.predict(*args, api_name=api_name)
            results.append((name, False, f"accepted: {str(answer)[:160]}"))
        except Exception as error:  # noqa: BLE001 — the Gradio client wraps the server's gr.Error
            text = str(error)
            results.append((name, phrase in text and "Traceback" not in text, text[:160]))
    uploads = {
        "admin upload: HTML named .jpg and a cut PNG": ["page.jpg", "cut.png"],
        "admin upload: zip-slip zip": ["slip.zip"],
    }
    for name, files in uploads.items():
        summary = admin.predict([handle_file(str(files_dir / f)) for f in files], "x", api_name="/admin_upload")[0]
        results.append((name, "added **0**" in summary and "rejected **0**" not in summary, summary[:160]))
    return results


def count_routes(settings: Settings) -> int:
    """Routes the app opens, Gradio's inside each mount included, from an app built in this process."""
    from server import build_app

    context = Context.open(settings)
    try:
        app = build_app(context)
        return _count(app.routes)
    finally:
        context.database.dispose()


def _count(routes) -> int:
    from starlette.routing import Mount

    total = 0
    for route in routes:
        if isinstance(route, Mount):
            total += _count(route.routes)
        elif hasattr(route, "original_router"):  # FastAPI 0.165 keeps included routers whole
            total += _count(route.original_router.routes)
        else:
            total += 1
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def door_cases(base: str, settings: Settings) -> dict:
    """The framework's doors: every event, the file and upload routes, closed routes, caps, sessions."""
    secret = settings.data_dir / "loupe.db" if settings.resolved_database_url.startswith("sqlite") else None
    if secret is None:  # PostgreSQL: the database is not a file; a stand-in secret in the data folder
        secret = settings.data_dir / "secret.txt"
        secret.write_text("loupe secret: nobody outside may read this\n")
    secret_bytes = secret.read_bytes()
    anonymous = httpx.Client(base_url=base, timeout=60)
    expert = login(base, *EXPERT)
    found = [(anonymous, e) for e in events(anonymous, "")] + [(expert, e) for e in events(expert, "/review")]
    results: list[tuple[str, bool, str]] = []  # (case, clean, detail)
    statuses: list[int] = []

    def clean_event(answer: dict, phrase: str) -> bool:
        text = str(answer)
        statuses.append(answer.get("status", 200))
        return answer["success"] is False and phrase in (answer["error"] or "") and str(settings.data_dir) not in text

    for client, event in found:
        if not event.input_types:
            continue
        answer = run_event(client, event, [client_path(secret)] * len(event.input_types))
        results.append(
            (
                f"{event.mount or '/'} event {event.fn_index}: client path",
                clean_event(answer, "upload"),
                str(answer)[:160],
            )
        )
        if event.takes_files and event.mount == "":
            for name, data, phrase in (
                ("big.png", large_png(), "pixels"),
                ("page.jpg", b"<html>x</html>", "cannot be used"),
            ):
                answer = run_event(client, event, [uploaded(client, "", name, data)])
                results.append((f"/ event {event.fn_index}: {name}", clean_event(answer, phrase), str(answer)[:160]))
            started = time.perf_counter()
            answer = run_event(client, event, [uploaded(client, "", "many.gif", animated_gif())])
            seconds = time.perf_counter() - started
            fine = answer["success"] is True or "cannot be used" in (answer["error"] or "")
            results.append((f"/ event {event.fn_index}: 300-frame GIF ({seconds:.1f} s)", fine, str(answer)[:160]))
    for client, mount in ((anonymous, ""), (expert, "/review"), (anonymous, "/review")):
        for target in (secret, "/etc/passwd", "data/loupe.db", settings.data_dir / "web" / ".." / secret.name):
            answer = client.get(f"{mount}/gradio_api/file={target}")
            statuses.append(answer.status_code)
            clean = answer.status_code in (401, 403) and secret_bytes not in answer.content
            results.append((f"{mount or '/'} file={target}", clean, f"{answer.status_code} {answer.text[:100]}"))
        for route in CLOSED:
            answer = client.get(f"{mount}{route}")
            statuses.append(answer.status_code)
            results.append((f"{mount or '/'}{route}", answer.status_code in (403, 404), str(answer.status_code)))
    chunked = httpx.post(
        f"{base}/gradio_api/upload",
        content=iter([b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n']
                     + [b"\0" * 1024 * 1024] * (settings.max_image_bytes // (1024 * 1024) + 3)),
        headers={"content-type": "multipart/form-data; boundary=x"},
        timeout=60,
    )  # fmt: skip
    statuses.append(chunked.status_code)
    results.append(("chunked upload past the cap", chunked.status_code == 413, str(chunked.status_code)))
    expert_upload = expert.post("/review/gradio_api/upload", files={"files": ("x.png", png())})
    statuses.append(expert_upload.status_code)
    results.append(("expert uploads on /review", expert_upload.status_code == 403, str(expert_upload.status_code)))
    return {
        "events": len(found),
        "results": results,
        "statuses": statuses,
        "leaked": len(files_holding(settings.data_dir / "web", secret_bytes)) if secret.exists() else 0,
    }


def session_cases(base: str, context: Context) -> list[tuple[str, bool, str]]:
    """Sessions after a password reset and a disabled account: refused at once."""
    results = []
    expert = login(base, *EXPERT)
    user_db.set_password(context.database, EXPERT[0], EXPERT[1])  # a reset, to the same word: still a reset
    answer = expert.get("/review/config")
    results.append(("session after a password reset", answer.status_code == 401, str(answer.status_code)))
    admin = login(base, *ADMIN)
    user_db.add_user(context.database, "bench-temp", "admin", "temp-password")
    temp = login(base, "bench-temp", "temp-password")
    user_db.set_disabled(context.database, "bench-temp", True)
    answer = temp.get("/review/config")
    results.append(("session of a disabled account", answer.status_code == 401, str(answer.status_code)))
    admin.get("/review/logout")
    answer = admin.get("/review/config")
    results.append(("session after logout", answer.status_code == 401, str(answer.status_code)))
    return results


def run_on(settings: Settings, work: Path) -> dict:
    context = Context.open(settings)
    images = work / "seed" / "cat"
    images.mkdir(parents=True)
    for index in range(3):
        (images / f"{index}.png").write_bytes(png(color=(index * 60, 90, 30)))
    import_paths(context, [images.parent])
    write_head_only_version(context, "v1", ["cat", "dog"], 64)
    version_db.promote(context.database, "v1")
    user_db.add_user(context.database, ADMIN[0], "admin", ADMIN[1])
    user_db.add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    routes = count_routes(settings)
    port = free_port()
    server = start_server(settings, port)
    try:
        base = f"http://127.0.0.1:{port}"
        memory_before = rss_mb(server.pid)
        before = fingerprint(context)
        rest = http_cases(base, work, settings.max_image_bytes)
        ui = gradio_cases(base, work)
        doors = door_cases(base, settings)
        after = fingerprint(context)
        sessions = session_cases(base, context)
        memory_growth = rss_mb(server.pid) - memory_before
        time.sleep(3)  # let the attacks' connections close
        cpu_start, wall_start = cpu_seconds(server.pid), time.monotonic()
        time.sleep(10)
        idle_cpu_share = (cpu_seconds(server.pid) - cpu_start) / (time.monotonic() - wall_start)
    finally:
        stop_server(server)
    context.database.dispose()

    failures = []
    for name, statuses, response in rest:
        body = response.text
        clean = response.status_code in statuses and "Traceback" not in body and '"detail"' in body
        if not clean:
            failures.append(f"{name}: {response.status_code} {body[:160]}")
    failures += [f"{name}: {detail}" for name, ok, detail in ui + doors["results"] + sessions if not ok]
    attacks = len(rest) + len(ui) + len(doors["results"]) + len(sessions)
    statuses = [response.status_code for _, _, response in rest] + doors["statuses"]
    return {
        "doors": routes + doors["events"],
        "routes": routes,
        "events": doors["events"],
        "attacks": attacks,
        "refused_cleanly": attacks - len(failures),
        "leaked": doors["leaked"],
        "server_errors": sum(status >= 500 for status in statuses),
        "db_unchanged": before == after,
        "memory_growth_mb": round(memory_growth, 1),
        "idle_cpu_share": round(idle_cpu_share, 4),
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_arguments(parser)
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as temp:
        for name, settings in bench_databases(Path(temp), args):
            results[name] = run_on(settings, Path(temp) / f"{name}-work")

    columns = ["doors", "attacks", "refused_cleanly", "leaked", "server_errors", "db_unchanged", "memory_growth_mb",
               "idle_cpu_share"]  # fmt: skip
    print_table(
        "Bad inputs and every door of a running server",
        ["database", *columns],
        [[name, *(r[c] for c in columns)] for name, r in results.items()],
    )
    for name, r in results.items():
        for failure in r["failures"]:
            print(f"{name}: NOT CLEAN: {failure}")
    print(
        json.dumps(
            {
                "doors": max(r["doors"] for r in results.values()),
                "attacks": sum(r["attacks"] for r in results.values()),
                "refused_cleanly": sum(r["refused_cleanly"] for r in results.values()),
                "leaked": sum(r["leaked"] for r in results.values()),
                "server_errors": sum(r["server_errors"] for r in results.values()),
                "db_unchanged": all(r["db_unchanged"] for r in results.values()),
                "idle_cpu_share": max(r["idle_cpu_share"] for r in results.values()),
                "memory_growth_mb": max(r["memory_growth_mb"] for r in results.values()),
                **{name: {k: v for k, v in r.items() if k != "failures"} for name, r in results.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
