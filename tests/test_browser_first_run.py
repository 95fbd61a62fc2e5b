"""In Chromium: from an empty data folder to a Predict page that answers, with nobody pressing Retrain.

The server runs the real scheduler (short ticks); the first model, a head on the images' embeddings, is
trained for real on tiny images by a worker process, promoted, and swapped in; then the loop fine-tunes
the network once (64 px, one frozen and one unfrozen epoch), and the gate decides which one answers."""

from __future__ import annotations

import time

import httpx
from conftest import LiveServer, wait_until
from training_fixtures import open_data_dir, shape_image, write_shapes

from db import model_versions as version_db
from db import runs as run_db
from labeling.imports.ingest import import_paths
from training.first_model import FIRST_MODEL_TRIGGER
from training.scheduler import LoopPolicy, save_policy

TRAINING_S = 300_000  # ms: a real (tiny) training run on a busy CPU


def follow_status(status, until: str, timeout_s: float) -> list[str]:
    """Each distinct text the status shows, in order, until it shows until (or the time runs out)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        text = status.inner_text().strip()
        if not seen or seen[-1] != text:
            seen.append(text)
        if until in text:
            return seen
        assert time.monotonic() < deadline, f"the status never said {until!r}; it said: {seen}"
        time.sleep(0.2)


def test_the_predict_page_follows_the_first_model_and_then_answers_with_it(tmp_path, page):
    context = open_data_dir(tmp_path / "data", scheduler=True, scheduler_tick_s=0.5, retrain_check_s=0.5)
    # The policy's defaults but tiny training; the quick loop stays off so the CPU goes to training.
    save_policy(context, LoopPolicy(quick_loop=False, size=64, freeze_epochs=1, epochs=1))
    (tmp_path / "disc.png").write_bytes(shape_image("disc", seed=11))
    with LiveServer(context) as server:
        page.goto(server.url + "/")
        status = page.locator("#predict-status")
        status.get_by_text("No model has been trained yet: there are no labeled images yet").wait_for()

        import_paths(context, [write_shapes(tmp_path / "shapes", per_class=12)])
        # The page follows on its own (its timer), no reload. Every sentence it shows on the way is kept:
        # a tiny run can train between two refreshes, so the test reads them all rather than wait for one.
        seen = follow_status(status, until="Model version v1 answers.", timeout_s=TRAINING_S / 1000)
        # A head is claimed by its worker within a second: its queued state may fall between two refreshes.
        assert any(text.startswith(("The first model is training", "The first model is trained")) for text in seen), (
            seen
        )

        page.locator("#predict-image input[type=file]").set_input_files(str(tmp_path / "disc.png"))
        page.locator("#predict-button").click()
        page.get_by_text("Answered by model version v1.").wait_for()

        assert run_db.get_run(context.database, 1).kind == "head"
        # Then the loop fine-tunes once, with the server still up; the gate keeps the better of the two.
        wait_until(
            lambda: any(r.kind == "finetune" and r.status == "succeeded" for r in run_db.list_runs(context.database)),
            timeout=TRAINING_S / 1000,
            what="the first fine-tune",
        )
        runs = run_db.list_runs(context.database)
        assert [(r.kind, r.trigger, r.status) for r in runs] == [
            ("finetune", FIRST_MODEL_TRIGGER, "succeeded"),
            ("head", FIRST_MODEL_TRIGGER, "succeeded"),
        ]
        gate = runs[0].metrics["gate"]
        assert gate["incumbent"] == "v1" and gate["baseline_error"] is not None
        served = "v2" if gate["promote"] else "v1"
        assert version_db.promoted_version(context.database).version == served
        wait_until(
            lambda: httpx.get(f"{server.url}/api/health").json()["model_version"] == served,
            timeout=30,
            what=f"{served} swapped in",
        )
        page.locator("#predict-button").click()
        page.get_by_text(f"Answered by model version {served}.").wait_for()
    context.database.dispose()
