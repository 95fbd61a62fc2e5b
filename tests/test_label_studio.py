"""Loupe as the ML backend of a real Label Studio: connect, import tasks, predict, annotate, retrain.

Label Studio runs from .venv-ls (`make label-studio`, which `make test` runs); without it these tests are
skipped and say so. Loupe runs with private addresses refused, as in production: only the Label Studio the
token was made for may be fetched from on the loopback address.
"""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import ADMIN, LiveServer, free_port, wait_until
from label_studio_server import EXECUTABLE, USER, LabelStudio
from sqlalchemy import select
from training_fixtures import clone_version, copy_data_dir, open_data_dir, shape_image

from db import model_versions as version_db
from db import users as user_db
from db.schema import Decision, Image, Label, LabelStudioTask, User
from labeling import label_studio
from labeling.imports.ingest import import_paths
from labeling.instance.export import export_dataset

pytestmark = pytest.mark.skipif(
    not EXECUTABLE.exists(), reason=f"no Label Studio at {EXECUTABLE}: `make label-studio` installs it"
)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A real Label Studio with its own SQLite, on a free loopback port."""
    server = LabelStudio(tmp_path_factory.mktemp("label-studio"), free_port())
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


@pytest.fixture
def loupe(trained_dir, tmp_path):
    """A running Loupe with a trained model (v1), refusing private addresses like a real deployment."""
    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))
    user_db.add_user(context.database, ADMIN[0], "admin", ADMIN[1])
    with LiveServer(context) as server:
        yield server
    context.database.dispose()


def _admin(context):
    return user_db.get_user(context.database, ADMIN[0])


def _decisions(context) -> list[tuple[str, str, str | None, str | None]]:
    with context.database.read() as session:
        rows = session.execute(
            select(User.name, Decision.action, Decision.new_label, Decision.purpose)
            .join(User, User.id == Decision.user_id)
            .order_by(Decision.id)
        ).all()
    return [tuple(row) for row in rows]


def _linked(context) -> dict[int, int]:
    with context.database.read() as session:
        return dict(session.execute(select(LabelStudioTask.task_id, LabelStudioTask.image_id)).all())


def _latest(predictions: list[dict], version: str) -> dict:
    return next(p for p in predictions if p["model_version"] == version)


def test_label_studio_project_uses_loupe_as_its_ml_backend(studio, loupe):
    context = loupe.context
    made = label_studio.make_token(context, _admin(context), "label studio", studio.url)
    project = studio.create_project("shapes", ["disc", "bar"])
    # Shapes the model never saw (its training seeds are below 1020).
    files = {f"disc-{i}.png": shape_image("disc", seed=5000 + i) for i in range(2)}
    files |= {f"bar-{i}.png": shape_image("bar", seed=6000 + i) for i in range(2)}
    tasks = studio.upload_images(project["id"], files)
    # Label Studio stores an upload as /data/upload/<project>/<8 hex>-<file name>.
    by_name = {task["data"]["image"].rsplit("/", 1)[1].split("-", 1)[1].removesuffix(".png"): task for task in tasks}
    assert sorted(by_name) == ["bar-0", "bar-1", "disc-0", "disc-1"]

    backend = studio.connect_ml_backend(project["id"], f"{loupe.url}/api/label-studio", made.token)
    assert backend["readable_state"] == "Connected", backend
    assert backend["model_version"] == "v1"

    # An annotator labels one bar wrongly and one disc rightly: each webhook becomes a Loupe decision.
    studio.annotate(by_name["bar-1"]["id"], "disc")
    studio.annotate(by_name["disc-0"]["id"], "disc")
    annotator = label_studio.ANNOTATOR_PREFIX + USER

    def annotators_decisions():
        return [d for d in _decisions(context) if d[0] == annotator]

    wait_until(lambda: len(annotators_decisions()) == 2, 60, what="both annotations to become decisions")
    assert annotators_decisions() == [
        (annotator, "relabel", "disc", "label-studio"),
        (annotator, "relabel", "disc", "label-studio"),
    ]  # both images were new to Loupe, unlabeled until the annotation

    studio.retrieve_predictions(project["id"])
    scores = {}
    for name, task in by_name.items():
        prediction = _latest(studio.predictions(task["id"]), "v1")
        assert prediction["result"][0]["from_name"] == "label"
        assert prediction["result"][0]["value"]["choices"][0] in ("disc", "bar")
        scores[name] = prediction["score"]
    # The score is how likely the task's label is wrong: a bar labeled disc scores above a disc labeled disc.
    assert scores["bar-1"] > scores["disc-0"], scores
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    assert len(_linked(context)) == 4  # every task's image is a Loupe image now

    # A new model version is promoted: Label Studio's next retrieval asks again, and gets the new version.
    clone_version(context, "v1", "v2")
    version_db.promote(context.database, "v2")
    wait_until(
        lambda: httpx.get(f"{loupe.url}/api/health").json()["model_version"] == "v2", 60, what="the server to serve v2"
    )
    studio.retrieve_predictions(project["id"])
    for task in by_name.values():
        assert _latest(studio.predictions(task["id"]), "v2")["result"]


def test_the_backend_refuses_wrong_tokens_and_spoofed_webhooks(studio, loupe):
    context = loupe.context
    made = label_studio.make_token(context, _admin(context), "label studio", studio.url)
    project = studio.create_project("spoofing", ["disc", "bar"])
    (task,) = studio.upload_images(project["id"], {"disc-9.png": shape_image("disc", seed=7000)})
    studio.connect_ml_backend(project["id"], f"{loupe.url}/api/label-studio", made.token)
    before = _decisions(context)

    predict = {"tasks": [task], "project": f"{project['id']}.0"}
    for auth in (None, ("loupe", "not-the-token"), ("loupe", made.token[:-1])):
        answer = httpx.post(f"{loupe.url}/api/label-studio/predict", json=predict, auth=auth)
        assert answer.status_code == 401, answer.text
        assert "token" in answer.json()["detail"]

    # A webhook naming an annotation Label Studio does not have: read back, refused, nothing decided.
    fake = {"action": "ANNOTATION_CREATED", "annotation": {"id": 999_999, "project": project["id"]}}
    answer = httpx.post(f"{loupe.url}/api/label-studio/webhook", json=fake)
    assert answer.status_code == 400 and "could not be read back" in answer.json()["detail"], answer.text

    # A real annotation, spoofed to say "bar": Loupe records what Label Studio holds ("disc"), once.
    annotation = studio.annotate(task["id"], "disc")
    wait_until(lambda: len(_decisions(context)) > len(before), 60, what="the annotation's decision")
    spoofed = {
        "action": "ANNOTATION_UPDATED",
        "annotation": {
            "id": annotation["id"],
            "project": project["id"],
            "result": [{"from_name": "label", "type": "choices", "value": {"choices": ["bar"]}}],
        },
    }
    answer = httpx.post(f"{loupe.url}/api/label-studio/webhook", json=spoofed)
    assert answer.status_code == 200 and answer.json()["outcome"].startswith("already recorded"), answer.text
    after = _decisions(context)
    assert after[len(before) :] == [(label_studio.ANNOTATOR_PREFIX + USER, "relabel", "disc", "label-studio")]

    # The token is revoked: Label Studio's next call is refused.
    label_studio.revoke_token(context, _admin(context), "label studio")
    answer = httpx.get(f"{loupe.url}/api/label-studio/health", auth=("loupe", made.token))
    assert answer.status_code == 401


def _labels_and_splits(context) -> dict[str, tuple[str | None, str]]:
    with context.database.read() as session:
        rows = session.execute(select(Image.content_hash, Label.name, Image.split).outerjoin(Label)).all()
    return {digest: (label, split) for digest, label, split in rows}


def test_a_loupe_export_round_trips_through_label_studio(studio, trained_dir, tmp_path):
    """Loupe's Label Studio export → imported by Label Studio → Label Studio's export → a fresh Loupe."""
    source = open_data_dir(copy_data_dir(trained_dir, tmp_path / "source"))
    destination = tmp_path / "export"
    export_dataset(source, destination, "labelstudio")
    config = (destination / "label_config.xml").read_text()
    project = studio.call("POST", "/api/projects", {"title": "round trip", "label_config": config})
    tasks = json.loads((destination / "tasks.json").read_text())
    studio.import_tasks(project["id"], tasks)

    exported = studio.export(project["id"])  # as Label Studio writes it: its own ids, users, timestamps
    assert len(exported) == len(tasks) and all(task["annotations"] for task in exported)
    (destination / "from-label-studio.json").write_text(json.dumps(exported))
    fresh = open_data_dir(tmp_path / "fresh")
    summary = import_paths(fresh, [destination / "from-label-studio.json"])
    assert (summary.added, summary.rejected) == (len(tasks), [])
    assert _labels_and_splits(fresh) == _labels_and_splits(source)
