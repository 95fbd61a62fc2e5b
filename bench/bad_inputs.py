"""A corpus of bad inputs against a running server: each must be refused cleanly and change nothing.

Starts `server.py serve` on an instance with a few images, two accounts and a served model, then sends
truncated JPEG/PNG, empty files, a 200-Mpixel PNG, HTML named .jpg, a TIFF, an oversize upload,
loopback / private / link-local / non-http URLs, bad or stale decisions, calls without a login or
with the wrong role, and admin uploads of bad files and a zip-slip zip. A case is refused cleanly
when the answer is the expected 4xx (or Gradio error) with a plain sentence: no 500, no stack trace.
The database is compared before and after (row counts of every table and the dataset's counts);
the import log's batch and rejection rows are left out: recording a refused upload is their job.
Runs on SQLite and, when it answers, on PostgreSQL. Last line: one JSON object.

    .venv/bin/python bench/bad_inputs.py [--postgres-url URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
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
from labeling.ingest import import_paths
from settings import Settings

ADMIN, EXPERT = ("bench-admin", "admin-password"), ("bench-expert", "expert-password")
LOG_TABLES = ("import_batches", "import_rejections")


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
        ("expert calls admin_upload", expert, "admin role", ([page], "x"), "/admin_upload"),
        ("expert calls retrain_now", expert, "admin role", (1, 1, "", False), "/retrain_now"),
        ("expert calls promote_version", expert, "admin role", ("v1",), "/promote_version"),
        ("expert calls add_user", expert, "admin role", ("mallory", "admin", "mallory-password"), "/add_user"),
        ("expert calls admin_purge", expert, "admin role", ([1],), "/admin_purge"),
        ("expert calls disable_user", expert, "admin role", (ADMIN[0], ""), "/disable_user"),
        ("admin: bad user name", admin, "needs a name", ("  ", "expert", "password-123"), "/add_user"),
        ("admin: unknown version", admin, "no version", ("v404",), "/promote_version"),
        ("admin: bad schedule", admin, "crontab", (True, 20, 0, "every night", 0.01, 1, 2, 128), "/save_loop_policy"),
        # Gradio's Image component refuses a non-image before Loupe's handler sees it, in its own words.
        ("public predict: HTML file", public, "Could not preprocess input component", (page,), "/predict"),
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
    before = fingerprint(context)
    port = free_port()
    server = start_server(settings, port)
    try:
        base = f"http://127.0.0.1:{port}"
        rest = http_cases(base, work, settings.max_image_bytes)
        ui = gradio_cases(base, work)
    finally:
        stop_server(server)
    after = fingerprint(context)
    context.database.dispose()

    failures = []
    for name, statuses, response in rest:
        body = response.text
        clean = response.status_code in statuses and "Traceback" not in body and '"detail"' in body
        if not clean:
            failures.append(f"{name}: {response.status_code} {body[:160]}")
    failures += [f"{name}: {detail}" for name, ok, detail in ui if not ok]
    return {
        "cases": len(rest) + len(ui),
        "refused_cleanly": len(rest) + len(ui) - len(failures),
        "db_unchanged": before == after,
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

    print_table(
        "Bad inputs against a running server",
        ["database", "cases", "refused cleanly", "database unchanged"],
        [[name, r["cases"], r["refused_cleanly"], r["db_unchanged"]] for name, r in results.items()],
    )
    for name, r in results.items():
        for failure in r["failures"]:
            print(f"{name}: NOT CLEAN: {failure}")
    print(
        json.dumps(
            {
                "cases": sum(r["cases"] for r in results.values()),
                "refused_cleanly": sum(r["refused_cleanly"] for r in results.values()),
                "db_unchanged": all(r["db_unchanged"] for r in results.values()),
                **{name: {k: v for k, v in r.items() if k != "failures"} for name, r in results.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
