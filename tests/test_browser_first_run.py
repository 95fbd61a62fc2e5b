"""In Chromium: from an empty data folder to a Predict page that answers, with nobody pressing Retrain.

The server runs the real scheduler (short ticks); the first model is trained for real on tiny images
(64 px, one frozen and one unfrozen epoch) by a worker process, promoted, and swapped in."""

from __future__ import annotations

from conftest import LiveServer
from training_fixtures import open_data_dir, shape_image, write_shapes

from db import model_versions as version_db
from db import runs as run_db
from labeling.imports.ingest import import_paths
from training.scheduler import FIRST_MODEL_TRIGGER, LoopPolicy, save_policy

TRAINING_S = 300_000  # ms: a real (tiny) training run on a busy CPU


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
        # The page follows on its own (its timer), no reload: queued, then training with its progress.
        status.get_by_text("The first model is training").wait_for(timeout=120_000)
        page.get_by_text("Model version v1 answers.").wait_for(timeout=TRAINING_S)

        page.locator("#predict-image input[type=file]").set_input_files(str(tmp_path / "disc.png"))
        page.locator("#predict-button").click()
        page.get_by_text("Answered by model version v1.").wait_for()

    runs = run_db.list_runs(context.database)
    assert [(r.trigger, r.status) for r in runs] == [(FIRST_MODEL_TRIGGER, "succeeded")]
    assert version_db.promoted_version(context.database).version == "v1"
    context.database.dispose()
