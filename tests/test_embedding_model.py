"""Bring your own embedding model: an operator's ONNX image encoder, checked when loaded, embeds and ranks.

Every model here is a tiny real network exported with torch.onnx in the test, and run with ONNX Runtime.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import select
from torch import nn

from db import embeddings as embedding_db
from db.images import iter_active_labeled
from db.schema import Score
from errors import LoupeError
from models.embedder import EmbeddingModelError, FileEmbedder, user_embedder
from settings import SettingError, Settings, env_name


def tiny_encoder(seed: int = 0) -> nn.Module:
    """Conv → ReLU → global average pool → flatten: (N, 3, H, W) → (N, 8)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


def export(model: nn.Module, path: Path, sample: tuple, input_names: list[str], dynamic_axes: dict | None) -> Path:
    """model as ONNX at path, the way the project exports (opset 17, TorchScript exporter)."""
    torch.onnx.export(
        model, sample, str(path), opset_version=17, dynamo=False, input_names=input_names, dynamic_axes=dynamic_axes
    )
    return path


class TwoInputs(nn.Module):
    def forward(self, x, y):
        return (x + y).mean(dim=(2, 3))


class Tokens(nn.Module):
    """A feature map flattened to (N, C, h·w) tokens: rank 3, which Loupe cannot pool."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, x):
        return self.conv(x).flatten(2)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Each kind of model file the tests load, by name."""
    folder = tmp_path_factory.mktemp("models")
    image = (torch.zeros(1, 3, 64, 64),)
    any_size = {"x": {0: "b", 2: "h", 3: "w"}}
    with torch.no_grad():
        torch.manual_seed(1)
        feature_map = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU()).eval()
        paths = {
            "any_size": export(tiny_encoder(0), folder / "any_size.onnx", image, ["x"], any_size),
            "other_weights": export(tiny_encoder(1), folder / "other_weights.onnx", image, ["x"], any_size),
            "fixed_64": export(tiny_encoder(0), folder / "fixed_64.onnx", image, ["x"], {"x": {0: "b"}}),
            "batch_of_one": export(tiny_encoder(0), folder / "batch_of_one.onnx", image, ["x"], None),
            "feature_map": export(feature_map, folder / "feature_map.onnx", image, ["x"], any_size),
            "two_inputs": export(TwoInputs(), folder / "two_inputs.onnx", (*image, *image), ["x", "y"], None),
            "rank_2": export(nn.Linear(4, 8).eval(), folder / "rank_2.onnx", (torch.zeros(1, 4),), ["x"], None),
            "tokens": export(Tokens().eval(), folder / "tokens.onnx", image, ["x"], any_size),
        }
    (folder / "not_a_model.onnx").write_text("this is a text file, renamed\n")
    paths["not_a_model"] = folder / "not_a_model.onnx"
    return paths


def pictures(count: int, size: int = 48) -> list[Image.Image]:
    """count different RGB noise images."""
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)) for _ in range(count)]


def refusal(path: Path, **options) -> str:
    """The sentence FileEmbedder refuses path with."""
    with pytest.raises(EmbeddingModelError) as raised:
        FileEmbedder(path, **options)
    assert isinstance(raised.value, LoupeError)
    assert raised.value.message.startswith(f"the embedding model {path} ")
    return raised.value.message


@pytest.mark.parametrize(("name", "size"), [("any_size", 96), ("fixed_64", 64), ("batch_of_one", 64)])
def test_embeddings_are_unit_vectors_and_deterministic(models, name, size):
    embedder = FileEmbedder(models[name], size=size)
    images = pictures(3)
    first = embedder.embed(images)
    assert first.shape == (3, 8) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    assert np.array_equal(first, embedder.embed(images))
    assert np.allclose(first[1], embedder.embed(images[1:2])[0], atol=1e-6)  # a row does not depend on its batch
    assert not np.allclose(first[0], first[1])
    assert embedder.embed([]).shape == (0, 8)


def test_a_feature_map_is_averaged_over_its_positions(models):
    embedder = FileEmbedder(models["feature_map"], size=32)
    vectors = embedder.embed(pictures(2))
    assert vectors.shape == (2, 8) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_the_key_names_the_file_content_the_size_and_the_normalisation(models, tmp_path):
    model = tmp_path / "encoder.onnx"
    shutil.copy(models["any_size"], model)
    key = FileEmbedder(model, size=224).key
    assert key.startswith("file-") and key.endswith("-224") and len(key) <= 50  # the embeddings column's width
    assert FileEmbedder(model, size=224).key == key
    assert FileEmbedder(tmp_path.parent / tmp_path.name / "encoder.onnx", size=224).key == key
    assert FileEmbedder(model, size=160).key != key
    assert FileEmbedder(model, size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)).key != key
    shutil.copy(models["other_weights"], model)
    assert FileEmbedder(model, size=224).key != key


def test_a_fixed_size_model_with_another_size_names_the_size_to_set(models):
    message = refusal(models["fixed_64"], size=224)
    assert "64×64" in message and "LOUPE_EMBEDDING_SIZE=64" in message


def test_a_missing_file_says_to_set_the_variable(tmp_path):
    message = refusal(tmp_path / "nowhere" / "encoder.onnx")
    assert "does not exist" in message and "LOUPE_EMBEDDING_MODEL" in message and "ONNX" in message
    assert "is a folder" in refusal(tmp_path)


def test_a_file_that_is_not_onnx_is_refused_with_the_reason(models):
    message = refusal(models["not_a_model"])
    assert "is not an ONNX model onnxruntime can load" in message
    assert "Protobuf" in message and "[ONNXRuntimeError]" not in message


def test_two_inputs_are_refused(models):
    message = refusal(models["two_inputs"], size=64)
    assert "takes 2 inputs" in message and "one image input (batch, 3, height, width)" in message


def test_an_input_that_is_not_an_image_batch_is_refused(models):
    message = refusal(models["rank_2"])
    assert "takes input of shape [1, 4]" in message and "one image input (batch, 3, height, width)" in message


def test_an_output_that_is_neither_vectors_nor_a_feature_map_is_refused(models):
    message = refusal(models["tokens"], size=32)
    assert "returns shape" in message and "(batch, features) or (batch, features, h, w)" in message


def test_user_embedder_is_none_without_a_model_and_checks_the_one_set(models, tmp_path):
    assert user_embedder(Settings()) is None
    model = tmp_path / "encoder.onnx"
    shutil.copy(models["any_size"], model)
    settings = Settings(embedding_model=model, embedding_size=64)
    embedder = user_embedder(settings)
    assert isinstance(embedder, FileEmbedder) and embedder.key == FileEmbedder(model, size=64).key
    assert user_embedder(settings) is embedder  # the unchanged file is not checked again
    shutil.copy(models["feature_map"], model)  # another file in its place: checked and keyed anew
    assert user_embedder(settings).key != embedder.key
    model.unlink()
    with pytest.raises(EmbeddingModelError, match="does not exist"):
        user_embedder(settings)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting's variable is set."""
    for setting in dataclasses.fields(Settings):
        monkeypatch.delenv(env_name(setting.name), raising=False)
    return monkeypatch


def test_the_embedding_settings_are_read_from_the_environment(clean_env):
    defaults = Settings.from_env()
    assert defaults.embedding_model is None and defaults.embedding_size == 224
    assert defaults.embedding_mean == (0.485, 0.456, 0.406) and defaults.embedding_std == (0.229, 0.224, 0.225)
    clean_env.setenv("LOUPE_EMBEDDING_MODEL", "/srv/models/clip-vit-b32.onnx")
    clean_env.setenv("LOUPE_EMBEDDING_SIZE", "336")
    clean_env.setenv("LOUPE_EMBEDDING_MEAN", "0.5,0.5,0.5")
    clean_env.setenv("LOUPE_EMBEDDING_STD", "0.26862954, 0.26130258, 0.27577711")
    settings = Settings.from_env()
    assert settings.embedding_model == Path("/srv/models/clip-vit-b32.onnx") and settings.embedding_size == 336
    assert settings.embedding_mean == (0.5, 0.5, 0.5)
    assert settings.embedding_std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    clean_env.setenv("LOUPE_EMBEDDING_MODEL", "")
    assert Settings.from_env().embedding_model is None


@pytest.mark.parametrize(
    ("name", "raw", "words"),
    [
        ("LOUPE_EMBEDDING_MEAN", "1,2", "three numbers"),
        ("LOUPE_EMBEDDING_MEAN", "0.5,0.5,grey", "three numbers"),
        ("LOUPE_EMBEDDING_STD", "0.5,0,0.5", "above zero"),
        ("LOUPE_EMBEDDING_SIZE", "0", "above zero"),
        ("LOUPE_EMBEDDING_SIZE", "large", "whole number"),
    ],
)
def test_a_bad_embedding_setting_is_a_setting_error(clean_env, name, raw, words):
    clean_env.setenv(name, raw)
    with pytest.raises(SettingError) as raised:
        Settings.from_env()
    assert name in raised.value.message and raw in raised.value.message and words in raised.value.message


def write_classes(folder: Path, per_class: int = 10) -> Path:
    """Class folders red/, green/ and blue/: noise tinted by the class, so an embedding tells them apart."""
    rng = np.random.default_rng(3)
    for channel, name in enumerate(("red", "green", "blue")):
        (folder / name).mkdir(parents=True)
        for number in range(per_class):
            pixels = rng.integers(0, 90, (40, 40, 3), dtype=np.uint8)
            pixels[..., channel] += 150
            Image.fromarray(pixels).save(folder / name / f"{name}{number}.png")
    return folder


def test_rescore_embeds_with_the_operators_model_and_scores_every_labeled_image(context, models, tmp_path):
    from labeling.imports.ingest import import_paths
    from labeling.ranking.scoring import rescore

    context.settings = dataclasses.replace(context.settings, embedding_model=models["any_size"], embedding_size=64)
    import_paths(context, [write_classes(tmp_path / "source")])
    labeled = {row.id for row in iter_active_labeled(context.database)}
    assert len(labeled) == 30

    result = rescore(context)

    key = user_embedder(context.settings).key
    images, matrix = embedding_db.load_embeddings(context.database, key)
    assert {image.image_id for image in images} == labeled and matrix.shape == (30, 8)
    with context.database.read() as session:
        scored = set(session.scalars(select(Score.image_id).where(Score.scorer == result.scorer)))
    assert scored == labeled
    assert key in result.scorer


def test_a_broken_model_file_leaves_the_last_ranking_serving(context, models, tmp_path):
    from labeling.imports.ingest import import_paths
    from labeling.ranking.scoring import serving_scorer
    from training.scheduler import LoopPolicy, last_rescore, run_quick_loop
    from ui.admin_models import loop_status

    policy = LoopPolicy(debounce_s=0, retrain_after_decisions=0)
    context.settings = dataclasses.replace(context.settings, embedding_model=models["any_size"], embedding_size=64)
    import_paths(context, [write_classes(tmp_path / "source")])
    good = run_quick_loop(context, policy, "test")
    assert serving_scorer(context) == good.scorer

    broken = tmp_path / "broken.onnx"
    broken.write_text("not a model")
    context.settings = dataclasses.replace(context.settings, embedding_model=broken)
    assert run_quick_loop(context, policy, "test") is None
    assert "is not an ONNX model" in last_rescore(context)["error"]
    assert serving_scorer(context) == good.scorer  # the queue still reads the last good pass
    status = loop_status(context, None)
    assert "cannot rescore" in status and "broken.onnx" in status and "keeps serving" in status

    context.settings = dataclasses.replace(context.settings, embedding_model=models["any_size"])
    assert run_quick_loop(context, policy, "test") is not None  # fixed: the loop goes on
    assert "error" not in last_rescore(context)
