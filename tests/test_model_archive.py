"""Models to take away: a version as one zip (ONNX model, fastai export, classes, model card, confusion matrix).

One real tiny model (the session's trained_dir) is archived once by the CLI and read back with the real
libraries: ONNX Runtime running the card's own snippet, fastai's load_learner, PIL. The REST route and the
Admin tab's event are exercised on a live server; the refusals on SQLite and PostgreSQL.
"""

from __future__ import annotations

import ast
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import httpx
import pytest
from conftest import ADMIN, EXPERT, wait_until
from PIL import Image
from training_fixtures import open_data_dir, register_copy, run_cli, shape_image
from web_doors import events, login, run_event

from db import model_versions as version_db
from db import runs as run_db
from db.users import add_user
from training.archive import (
    ArchiveExists,
    UnknownVersion,
    VersionIncomplete,
    VersionPruned,
    build_archive,
    save_archive,
)

ARCHIVE_FILES = {"model.onnx", "export.pkl", "classes.json", "MODEL_CARD.md", "confusion_matrix.png"}


@pytest.fixture(scope="module")
def unpacked(trained_dir, tmp_path_factory):
    """trained_dir's v1 archived by `loupe model-archive`, and the folder it was unzipped into."""
    root = tmp_path_factory.mktemp("archive")
    written = run_cli(trained_dir, "model-archive", "v1", "-o", str(root))
    assert written.returncode == 0, written.stderr
    assert f"written to {root / 'loupe-v1.zip'}" in written.stdout
    with zipfile.ZipFile(root / "loupe-v1.zip") as archive:
        assert set(archive.namelist()) == ARCHIVE_FILES
        archive.extractall(root / "unzipped")
    return root / "unzipped"


def registry_listing(data_dir: Path) -> list[str]:
    """Every path under the model registry, to show that archiving wrote nothing there."""
    return sorted(str(p.relative_to(data_dir)) for p in (data_dir / "models").rglob("*"))


def test_archive_holds_the_versions_files_and_a_card_saying_what_it_is(trained_dir, unpacked):
    folder = trained_dir / "models" / "v1"
    for name in ("model.onnx", "export.pkl", "classes.json"):
        assert (unpacked / name).read_bytes() == (folder / name).read_bytes()
    classes = json.loads((unpacked / "classes.json").read_text())
    assert classes == ["bar", "disc"]
    with Image.open(unpacked / "confusion_matrix.png") as picture:
        assert picture.format == "PNG" and picture.width > 200

    card = (unpacked / "MODEL_CARD.md").read_text()
    context = open_data_dir(trained_dir)
    run = run_db.get_run(context.database, 1)
    context.database.dispose()
    assert card.startswith("# Loupe model v1\n") and "| status | promoted" in card
    assert "efficientnet\\_lite0" in card and "(x − 0.5) / 0.5" in card and "(batch, 3, 64, 64)" in card
    # every class with its precision, recall and validation support, computed from the run's confusion matrix
    matrix = run.metrics["confusion_matrix"]
    for index, name in enumerate(classes):
        support = sum(matrix[index])
        precision = matrix[index][index] / sum(row[index] for row in matrix)
        recall = matrix[index][index] / support
        assert f"{index}. {name}" in card
        assert f"| {name} | {precision:.1%} | {recall:.1%} | {support} |" in card
    assert "![confusion matrix](confusion_matrix.png)" in card
    # the data snapshot: images per class and split, as the run saw them
    counts = run.metrics["class_counts"]
    assert sum(s["train"] + s["valid"] for s in counts.values()) == run.image_count == 40
    for name, split in counts.items():
        assert f"| {name} | {split['train']} | {split['valid']} |" in card
    assert f"Snapshot `{run.metrics['snapshot']}`" in card
    assert "| epochs | 1 frozen (head only), then 1 unfrozen |" in card and "| batch size | 8 |" in card
    assert "**Passed**: no version was promoted yet \\(v1 errs on " in card
    assert 'load_learner("export.pkl")' in card


def onnx_snippet(card: str) -> str:
    """The card's first Python block: the ONNX Runtime example."""
    return re.search(r"```python\n(.*?)```", card, re.S).group(1)


def test_the_cards_onnx_snippet_and_fastais_export_predict_what_the_server_answers(trained_server, unpacked, tmp_path):
    image = Image.open(io.BytesIO(shape_image("disc", seed=7100))).convert("RGB").resize((80, 64))  # not square
    path = tmp_path / "image.png"
    image.save(path)
    served = httpx.post(f"{trained_server.url}/api/predict", files={"file": ("image.png", path.read_bytes())})
    served = served.raise_for_status().json()
    assert served["model_version"] == "v1"

    snippet = onnx_snippet((unpacked / "MODEL_CARD.md").read_text()).replace('"image.jpg"', repr(str(path)))
    ran = subprocess.run(
        [sys.executable, "-c", snippet], cwd=unpacked, capture_output=True, text=True, timeout=120, check=True
    )
    from_snippet = ast.literal_eval(ran.stdout.strip())
    assert [name for name, _ in from_snippet] == [name for name, _ in served["predictions"]]
    for (_, ours), (_, theirs) in zip(from_snippet, served["predictions"], strict=True):
        assert abs(ours - theirs) < 1e-4

    from fastai.learner import load_learner

    learn = load_learner(unpacked / "export.pkl", cpu=True)
    assert list(learn.dls.vocab) == json.loads((unpacked / "classes.json").read_text())
    label, _, probabilities = learn.predict(path)
    assert label == served["predictions"][0][0]
    by_class = dict(served["predictions"])
    assert max(abs(float(p) - by_class[c]) for c, p in zip(learn.dls.vocab, probabilities, strict=True)) < 2e-3


def archive_folders() -> set[Path]:
    """The REST route's temporary folders that exist now."""
    return set(Path(tempfile.gettempdir()).glob("loupe-archive-*"))


def test_rest_route_streams_the_zip_to_admins_only_and_cleans_up(trained_server):
    context = trained_server.context
    add_user(context.database, ADMIN[0], "admin", ADMIN[1])
    add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    data_dir = context.settings.data_dir
    url = f"{trained_server.url}/api/models/v1/archive"
    before = (registry_listing(data_dir), version_db.list_versions(context.database), archive_folders())

    assert httpx.get(url, timeout=60).status_code == 401
    refused = httpx.get(url, auth=EXPERT, timeout=60)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    assert (registry_listing(data_dir), version_db.list_versions(context.database), archive_folders()) == before

    answer = httpx.get(url, auth=ADMIN, timeout=120)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    assert 'filename="loupe-v1.zip"' in answer.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert set(archive.namelist()) == ARCHIVE_FILES
        assert "**Passed**" in archive.read("MODEL_CARD.md").decode()
    wait_until(lambda: archive_folders() == before[2], timeout=30, what="the temporary archive to be removed")
    assert registry_listing(data_dir) == before[0]

    unknown = httpx.get(f"{trained_server.url}/api/models/v9/archive", auth=ADMIN, timeout=60)
    assert unknown.status_code == 404 and "no model version 'v9'" in unknown.json()["detail"]
    assert httpx.get(f"{trained_server.url}/api/models/v%00/archive", auth=ADMIN, timeout=60).status_code == 422


def test_admin_tab_event_serves_the_zip_to_admins_only(trained_server):
    context = trained_server.context
    add_user(context.database, ADMIN[0], "admin", ADMIN[1])
    add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    admin = login(trained_server.url, *ADMIN)
    archive_event = next(e for e in events(admin, "/review") if e.api_name == "model_archive")

    answered = run_event(admin, archive_event, ["v1"], timeout=120)
    assert answered["success"], answered
    served = answered["output"]["data"][0]
    path = Path(served["path"])
    admin_copies = context.settings.data_dir / "web" / "review" / "admin-copies"
    assert path.name == "loupe-v1.zip" and admin_copies.resolve() in path.parents
    file_url = f"/review/gradio_api/file={path}"
    downloaded = admin.get(file_url)
    assert downloaded.status_code == 200
    with zipfile.ZipFile(io.BytesIO(downloaded.content)) as archive:
        assert set(archive.namelist()) == ARCHIVE_FILES
    assert login(trained_server.url, *EXPERT).get(file_url).status_code == 403
    assert httpx.get(f"{trained_server.url}{file_url}", timeout=30).status_code == 403  # not logged in: no admin

    refused = run_event(admin, archive_event, ["v9"])
    assert refused["success"] is False and "no model version" in refused["error"]
    expert_try = run_event(login(trained_server.url, *EXPERT), archive_event, ["v1"])
    assert expert_try["success"] is False and "admin role" in expert_try["error"]


def test_refusals_name_the_problem_and_change_nothing(context, trained_dir, tmp_path):
    source = trained_dir / "models" / "v1"
    failed_gate = {
        "promote": False,
        "reason": "kept as a candidate: v2 errs on 30.0% of today's 11 validation images, v1 on 5.0%",
        "candidate_error": 0.3,
        "incumbent": "v1",
        "incumbent_error": 0.05,
        "tolerance": 0.02,
        "valid_images": 11,
    }
    register_copy(context, source, "v2", {"gate": failed_gate})
    pruned = register_copy(context, source, "v3", {})
    shutil.rmtree(pruned)
    version_db.mark_pruned(context.database, "v3")
    incomplete = register_copy(context, source, "v4", {})
    (incomplete / "export.pkl").unlink()
    data_dir = context.settings.data_dir
    before = (registry_listing(data_dir), version_db.list_versions(context.database))
    into = tmp_path / "out"

    with pytest.raises(UnknownVersion, match="no model version 'v9'") as unknown:
        build_archive(context, "v9", into)
    assert unknown.value.status == 404
    with pytest.raises(UnknownVersion):
        build_archive(context, "v\x00", into)  # PostgreSQL refuses NUL: refused before any query
    with pytest.raises(VersionPruned, match="v3 was pruned") as gone:
        build_archive(context, "v3", into)
    assert gone.value.status == 410
    with pytest.raises(VersionIncomplete, match="v4 lacks export.pkl") as lacking:
        build_archive(context, "v4", into)
    assert lacking.value.status == 409
    assert not into.exists() or not any(into.iterdir())  # nothing half-written
    assert (registry_listing(data_dir), version_db.list_versions(context.database)) == before

    # a version without a run: the card says what was not recorded, and the failed gate and why
    into.mkdir(exist_ok=True)  # an existing folder gets loupe-<version>.zip; any other path is the zip's name
    written = save_archive(context, "v2", into)
    assert written == into / "loupe-v2.zip" and sorted(p.name for p in into.iterdir()) == ["loupe-v2.zip"]
    with zipfile.ZipFile(written) as archive:
        card = archive.read("MODEL_CARD.md").decode()
        assert "confusion_matrix.png" in archive.namelist()  # meta.json holds the matrix since this issue
    assert "**Failed**: kept as a candidate: v2 errs on 30.0%" in card and "| then promoted | v1 |" in card
    assert "| status | candidate" in card and "| training run | none recorded" in card
    with pytest.raises(ArchiveExists, match="exists already"):
        save_archive(context, "v2", written)
    assert (registry_listing(data_dir), version_db.list_versions(context.database)) == before


def test_cli_refusals_are_one_line_and_exit_2(trained_dir, tmp_path):
    unknown = run_cli(trained_dir, "model-archive", "v9", "-o", str(tmp_path))
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: there is no model version 'v9'")
    (tmp_path / "taken.zip").write_bytes(b"mine")
    taken = run_cli(trained_dir, "model-archive", "v1", "-o", str(tmp_path / "taken.zip"))
    assert taken.returncode == 2 and "exists already" in taken.stderr
    assert (tmp_path / "taken.zip").read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == [
        "taken.zip"
    ]
