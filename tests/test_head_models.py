"""Heads on the ranking's cached embeddings as model versions, and the gate that makes a fine-tune beat them.

A real tiny dataset (shapes), ranked by the real quick-loop code (embeddings cached), a head trained by
`loupe train --kind head` in the worker process; its one ONNX graph is checked against the head fitted
on the cached embeddings, served (also by an ONNX-only process that never loads torch) and archived.
The loop's checks run on SQLite and PostgreSQL with runs only queued.
"""

from __future__ import annotations

import ast
import io
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import open_context
from PIL import Image
from training_fixtures import ROOT, copy_data_dir, open_data_dir, register_copy, run_cli, shape_image, write_shapes

from db import app_state
from db import model_versions as version_db
from db import runs as run_db
from labeling.imports.ingest import import_paths
from labeling.ranking.scoring import fit_head
from models.predictor import LoadedModel, Predictor
from models.registry import read_meta, write_version
from training.archive import build_archive
from training.candidates import register_candidate
from training.first_model import FIRST_MODEL_TRIGGER, WAITING_FOR_RANKING, first_model_note
from training.head import head_data, head_estimate
from training.launcher import queue_run, spawn_worker, wait_for_worker
from training.params import BadTrainingRequest
from training.scheduler import (
    HEAD_CHECK_KEY,
    HEAD_TRIGGER,
    LoopPolicy,
    run_first_finetune_check,
    run_first_model_check,
    run_head_check,
    run_quick_loop,
)
from ui.predict_status import no_model_sentence

POLICY = LoopPolicy(size=64, freeze_epochs=1, epochs=1, debounce_s=0)


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory):
    """The shapes dataset, ranked by `loupe score`, with a head trained by `loupe train --kind head` (v1)."""
    root = tmp_path_factory.mktemp("head")
    data_dir = root / "data"
    for command in (["import", str(write_shapes(root / "shapes"))], ["score"], ["train", "--kind", "head"]):
        done = run_cli(data_dir, *command)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "model version v1 written and promoted: no version was promoted yet" in done.stdout
    return data_dir


def shapes(count: int, seed: int = 9000) -> list[Image.Image]:
    """Fresh images of both kinds, none of them in the dataset."""
    kinds = ["disc", "bar"] * count
    return [Image.open(io.BytesIO(shape_image(kind, seed + i))).convert("RGB") for i, kind in enumerate(kinds[:count])]


def test_a_head_version_is_one_graph_that_gives_the_fitted_heads_probabilities(head_dir):
    context = open_data_dir(head_dir)
    try:
        row = version_db.promoted_version(context.database)
        run = run_db.get_run(context.database, row.run_id)
        assert (row.version, run.kind, row.metrics["kind"]) == ("v1", "head", "head")
        folder = head_dir / row.path
        assert sorted(p.name for p in folder.iterdir()) == ["classes.json", "meta.json", "model.onnx"]
        meta = read_meta(folder)
        assert [given["name"] for given in meta["inputs"]] == ["x128", "x224"]
        assert meta["head"]["encoders"] == ["lite0-stages-128", "lite0-stages-224"] and meta["head"]["C"] == 0.01
        # The graph's probabilities are the head's on the ranking's cached embeddings, image for image.
        data = head_data(context)
        train = ~data.frame["is_valid"].to_numpy()
        head = fit_head(data.features[train], data.frame["label"].to_numpy()[train])
        model = LoadedModel(folder)
        assert model.classes == [str(c) for c in head.classes_] == ["bar", "disc"]
        images = []
        for path in data.frame["path"]:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        assert np.abs(model.probabilities(images) - head.predict_proba(data.features)).max() < 1e-3
        # Batched serving (several images per network call, each input stacked) answers the same as one by one.
        predictor = Predictor(threads=1)
        assert predictor.swap(folder) == "v1"
        fresh = shapes(6)
        one_by_one = [model.predict(image) for image in fresh]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(6) as pool:
            batched = list(pool.map(predictor.predict, fresh))
        for single, together in zip(one_by_one, batched, strict=True):
            assert together.model_version == "v1"
            assert [c for c, _ in single.predictions] == [c for c, _ in together.predictions]
            assert (
                max(abs(a - b) for (_, a), (_, b) in zip(single.predictions, together.predictions, strict=False)) < 1e-4
            )
        assert sum(p.predictions[0][0] == kind for p, kind in zip(batched, ["disc", "bar"] * 3, strict=False)) >= 5
        # The run recorded what the Admin tab and the model card show.
        assert run.metrics["gate"]["kind"] == "head" and run.metrics["gate"]["baseline_error"] is None
        assert run.metrics["confusion_matrix"] and run.metrics["train_count"] + run.metrics["valid_count"] == 40
    finally:
        context.database.dispose()


def test_an_onnx_only_process_serves_a_head_version_without_torch(head_dir, tmp_path):
    image = tmp_path / "disc.png"
    image.write_bytes(shape_image("disc", 9100))
    script = (
        "import sys; from PIL import Image; from models.predictor import LoadedModel\n"
        f"model = LoadedModel({str(head_dir / 'models' / 'v1')!r}, threads=1, onnx_only=True)\n"
        f"print(model.predict(Image.open({str(image)!r}))); print(sorted(m for m in sys.modules if m.split('.')[0]"
        " in ('torch', 'fastai', 'sklearn', 'onnx')))\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    prediction, loaded = ran.stdout.strip().splitlines()
    assert "model_version='v1'" in prediction and "('disc'" in prediction
    assert loaded == "[]"  # ONNX Runtime alone: not torch, fastai, scikit-learn or the onnx library


def test_a_head_run_never_loads_torch():
    """The worker imports the fine-tune's modules (torch, fastai) only for a fine-tune run."""
    script = (
        "import sys, training.worker, training.head, training.candidates, training.gate\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'fastai', 'torchvision'}))"
    )
    ran = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"


def test_a_head_version_archives_as_the_graph_its_classes_and_a_card_whose_snippet_runs(head_dir, tmp_path):
    context = open_data_dir(head_dir)
    try:
        path = build_archive(context, "v1", into=tmp_path)
    finally:
        context.database.dispose()
    with zipfile.ZipFile(path) as archive:
        assert set(archive.namelist()) == {"model.onnx", "classes.json", "MODEL_CARD.md", "confusion_matrix.png"}
        archive.extractall(tmp_path / "unzipped")
    card = (tmp_path / "unzipped" / "MODEL_CARD.md").read_text()
    assert "logistic-regression head" in card and "`x128`" in card and "`x224`" in card
    assert "no fastai export" in card and "export.pkl" not in card
    image = tmp_path / "bar.png"
    image.write_bytes(shape_image("bar", 9200))
    snippet = card.split("```python\n")[1].split("```")[0].replace('"image.jpg"', repr(str(image)))
    ran = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path / "unzipped", capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    expected = LoadedModel(head_dir / "models" / "v1").predict(Image.open(image))
    from_card = ast.literal_eval(ran.stdout.strip())  # a printed list of (class, probability)
    assert [c for c, _ in from_card] == [c for c, _ in expected.predictions]
    assert max(abs(a - b) for (_, a), (_, b) in zip(from_card, expected.predictions, strict=False)) < 1e-4


def test_the_gate_keeps_a_fine_tune_that_errs_more_than_the_head(head_dir, tmp_path):
    """Tolerance 1 lets anything past the promoted version: only the head baseline can refuse it.

    The candidate is a real version written by hand so that it errs for sure (v1's graph with its classes
    listed the other way round), registered through the path every finished run takes.
    """
    context = open_data_dir(copy_data_dir(head_dir, tmp_path / "data"))
    try:
        run_id = queue_run(context, size=32, tolerance=1.0)  # only queued: no worker is started here
        run_db.start_run(context.database, run_id, "cpu", 40)
        source = context.settings.data_dir / "models" / "v1"

        def backwards(folder):
            for name in ("model.onnx", "meta.json"):
                shutil.copy(source / name, folder / name)
            (folder / "classes.json").write_text(json.dumps(list(reversed(read_meta(source)["classes"]))))
            return {k: v for k, v in read_meta(source).items() if k != "version"} | {"kind": "finetune"}

        version = f"v{run_id}"
        path = write_version(context, version, backwards)
        metrics = {"error_rate": 1.0, "valid_count": 11}
        register_candidate(
            context, run_id, version, path, metrics, run_db.get_run(context.database, run_id).params, "finetune"
        )
        gate = run_db.get_run(context.database, run_id).metrics["gate"]
        assert gate["kind"] == "finetune" and gate["baseline_error"] == head_estimate(context).error
        assert gate["candidate_error"] > gate["baseline_error"]
        assert not gate["promote"] and "a fine-tune is served only when it errs no more than the head" in gate["reason"]
        assert version_db.promoted_version(context.database).version == "v1"
        assert version_db.get_version(context.database, version).metrics["kind"] == "finetune"
        assert run_db.get_run(context.database, run_id).status == "succeeded"
        # Admin's tables show every number the verdict rests on.
        from ui.admin_models import versions_table
        from ui.admin_training import runs_table

        shown = versions_table(context).set_index("version").loc[version]
        assert (shown["kind"], shown["status"]) == ("finetune", "candidate")
        assert shown["at the gate"] == f"{gate['candidate_error']:.1%}"
        assert shown["promoted then"] == f"{gate['incumbent_error']:.1%}"
        assert shown["head baseline"] == f"{gate['baseline_error']:.1%}"
        runs = runs_table(context, run_db.list_runs(context.database)).set_index("run")
        assert runs.loc[run_id, "kind"] == "finetune" and runs.loc[run_id, "head baseline"] == shown["head baseline"]
        assert runs.loc[1, "kind"] == "head" and runs.loc[1, "head baseline"] == ""
        listed = run_cli(context.settings.data_dir, "versions").stdout
        assert f"{version}  finetune  candidate" in listed and "head baseline" in listed
        assert "v1  head      promoted" in listed
    finally:
        context.database.dispose()


def test_head_runs_take_no_fine_tuning_settings(tmp_path):
    context = open_data_dir(tmp_path / "data")
    try:
        with pytest.raises(BadTrainingRequest, match="a head on the cached embeddings takes no epochs, lr"):
            queue_run(context, kind="head", epochs=3, lr=0.1)
        with pytest.raises(BadTrainingRequest, match="unknown kind of run 'tree'"):
            queue_run(context, kind="tree")
        assert run_db.list_runs(context.database) == []
    finally:
        context.database.dispose()


def test_an_image_embedded_by_two_processes_keeps_the_first_row(context, tmp_path):
    """A head run and the quick loop may embed the same new image at once: the second write is skipped."""
    from db import embeddings as embedding_db

    import_paths(context, [write_shapes(tmp_path / "shapes", per_class=2)])
    ids = [image_id for image_id, _ in embedding_db.images_without_embedding(context.database, "k")]
    first, second = np.ones((len(ids), 3), np.float32), np.zeros((len(ids), 3), np.float32)
    embedding_db.store_embeddings(context.database, "k", ids[:2], first[:2])
    embedding_db.store_embeddings(context.database, "k", ids, second)  # two of them are there already
    images, matrix = embedding_db.load_embeddings(context.database, "k")
    assert [image.image_id for image in images] == ids
    assert matrix[:, 0].tolist() == [1.0, 1.0] + [0.0] * (len(ids) - 2)


# --- the loop --------------------------------------------------------------------------------------


@pytest.fixture
def queued_only(tmp_path, database_url):
    """A context on both databases whose runs are only queued (no worker process starts)."""
    context = open_context(tmp_path / "data", database_url, training_worker="external")
    yield context
    context.database.dispose()


def settle_ranking(context) -> None:
    """What the quick loop does after a quiet spell: a quick pass, then the refined one."""
    run_quick_loop(context, POLICY, "test")
    run_quick_loop(context, POLICY, "test")


def test_the_first_model_is_a_head_once_the_ranking_is_there_then_one_fine_tune(queued_only, tmp_path):
    context = queued_only
    import_paths(context, [write_shapes(tmp_path / "shapes", per_class=12)])
    assert run_first_model_check(context, POLICY) is None
    assert first_model_note(context)["reason"] == WAITING_FOR_RANKING
    assert no_model_sentence(context) == f"No model has been trained yet: {WAITING_FOR_RANKING}."
    run_quick_loop(context, POLICY, "test")
    run_id = run_first_model_check(context, POLICY)
    run = run_db.get_run(context.database, run_id)
    assert (run.kind, run.trigger, run.params) == ("head", FIRST_MODEL_TRIGGER, {"promote": True, "tolerance": 0.02})
    assert no_model_sentence(context).startswith("The first model is queued for training")
    # The head trains (here by hand: runs are only queued), is promoted; then the loop fine-tunes once.
    assert run_first_finetune_check(context, POLICY) is None  # the head's run holds the slot
    wait_for_worker(context, run_id, spawn_worker(context, run_id))
    assert version_db.promoted_version(context.database).metrics["kind"] == "head"
    finetune_id = run_first_finetune_check(context, POLICY)
    finetune = run_db.get_run(context.database, finetune_id)
    assert (finetune.kind, finetune.trigger, finetune.params["size"]) == ("finetune", FIRST_MODEL_TRIGGER, 64)
    run_db.finish_run(context.database, finetune_id, "cancelled")  # an admin cancels it: not tried again
    assert run_first_finetune_check(context, POLICY) is None


def test_after_a_settled_ranking_a_head_is_trained_only_when_it_beats_the_served_version(queued_only, tmp_path):
    context = queued_only
    import_paths(context, [write_shapes(tmp_path / "shapes", per_class=12)])
    run_quick_loop(context, POLICY, "test")
    head_run = run_first_model_check(context, POLICY)
    wait_for_worker(context, head_run, spawn_worker(context, head_run))
    served = version_db.promoted_version(context.database)
    assert run_head_check(context, POLICY) is None  # no settled ranking since the head was promoted
    settle_ranking(context)
    assert run_head_check(context, POLICY) is None
    note = app_state.get_state(context.database, HEAD_CHECK_KEY)
    assert note["outcome"] == f"{served.version} is a head trained on today's labels already"

    # The same graph registered as another kind of version: measured, and a new head would not do better.
    source = context.settings.data_dir / served.path
    register_copy(context, source, "same", {"kind": "finetune"})
    version_db.promote(context.database, "same")
    settle_ranking(context)  # the promotion moved the ranking's marks: it ranks again
    assert run_head_check(context, POLICY) is None
    note = app_state.get_state(context.database, HEAD_CHECK_KEY)
    assert note["served"] == "same" and note["head_error"] == note["served_error"]
    assert note["outcome"].startswith("same is served: the head would err on")

    # A served version that gets every class wrong (its classes listed the other way round).
    folder = register_copy(context, source, "backwards", {"kind": "finetune"})
    (folder / "classes.json").write_text(json.dumps(list(reversed(json.loads((source / "classes.json").read_text())))))
    version_db.promote(context.database, "backwards")
    assert run_head_check(context, POLICY) is None  # the same ranking was checked already
    settle_ranking(context)
    run_id = run_head_check(context, POLICY)
    run = run_db.get_run(context.database, run_id)
    assert (run.kind, run.trigger) == ("head", HEAD_TRIGGER)
    note = app_state.get_state(context.database, HEAD_CHECK_KEY)
    assert note["served_error"] > 0.5 > note["head_error"] and note["run_id"] == run_id
    assert run_head_check(context, POLICY) is None  # a run holds the slot, and this ranking was checked
    assert run_head_check(context, LoopPolicy(head_models=False)) is None
