"""Backbone embeddings for every image: a registered backbone's pooled features, computed with ONNX Runtime.

The backbone comes from models/specs.py like a training run's (Lite0 by default, the one whose weights
ship offline); its embeddings are cached under "<short name>-<size>" (e.g. "lite0-224").

An operator may bring their own ONNX image encoder instead (LOUPE_EMBEDDING_MODEL: a CLIP or DINOv2
image tower, say): FileEmbedder checks it completely when it is made, so a file Loupe cannot use is one
EmbeddingModelError sentence, and caches its embeddings under "file-<its SHA-256>-<size>".
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from models.onnx_cpu import cpu_session
from models.preprocess import prepare
from models.specs import DEFAULT_ARCH, IMAGENET_STATS, spec_for
from settings import SettingError, Settings

EMBED_SIZE = 224
IMAGENET_MEAN, IMAGENET_STD = (tuple(values) for values in IMAGENET_STATS)


def embedder_key(size: int = EMBED_SIZE, arch: str = DEFAULT_ARCH, stages: bool = False) -> str:
    """The name embeddings of this backbone, size and pooling are stored under ("lite0-224", "lite0-stages-224")."""
    return f"{spec_for(arch).short}{'-stages' if stages else ''}-{size}"


# Which of EfficientNet-Lite's seven stages the staged embedding pools: the last four (80, 112, 192 and
# 320 channels), and not the 1280-channel head convolution after them. The stages see strokes, parts and
# shapes before the head maps them onto ImageNet's classes: on glyphs, icons and emoji they rank more
# wrong labels first than the head's output, alone or beside them, and max pooling beside the mean adds
# more (bench/ranking.py; the README's "Finding wrong labels").
STAGES_POOLED = (3, 4, 5, 6)


def _lite_stage_features(network, x):
    """The stage ends in STAGES_POOLED, each mean- and max-pooled and each pooled part of unit length."""
    import torch

    parts, stage = [], 0
    x = network._swish(network._bn0(network._conv_stem(x)))
    blocks = list(network._blocks)
    for index, block in enumerate(blocks):
        x = block(x)
        if index + 1 == len(blocks) or blocks[index + 1]._block_args.output_filters != block._block_args.output_filters:
            if stage in STAGES_POOLED:
                parts += [x.mean(dim=(2, 3)), x.amax(dim=(2, 3))]
            stage += 1
    return torch.cat([torch.nn.functional.normalize(part, dim=1) for part in parts], dim=1)


def export_embedder(
    path: Path, size: int = EMBED_SIZE, arch: str = DEFAULT_ARCH, weights: Path | None = None, stages: bool = False
) -> None:
    """Write the backbone's ImageNet body with global average pooling as ONNX (atomically).

    stages: pool the stage ends in STAGES_POOLED instead of the head's output (EfficientNet-Lite only).
    """
    import torch
    from torch import nn

    from models.backbones import build_body

    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = build_body(arch, weights)

        def forward(self, x):
            if stages:
                return _lite_stage_features(self.body.network, x)
            return self.body(x).mean(dim=(2, 3))

    if stages and not arch.startswith("efficientnet_lite"):
        raise ValueError(f"staged embeddings are defined for EfficientNet-Lite, not {arch}")

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(handle)
    try:
        torch.onnx.export(
            Pooled().eval(),
            (torch.zeros(1, 3, size, size),),
            temp_name,
            opset_version=17,
            dynamo=False,
            input_names=["x"],
            output_names=["embedding"],
            dynamic_axes={"x": {0: "batch"}, "embedding": {0: "batch"}},
        )
        os.replace(temp_name, path)
    finally:
        Path(temp_name).unlink(missing_ok=True)


def export_embedder_once(
    path: Path, size: int = EMBED_SIZE, arch: str = DEFAULT_ARCH, weights: Path | None = None, stages: bool = False
) -> None:
    """export_embedder, in a child process unless this one has loaded torch already.

    The web server embeds with ONNX Runtime only; exporting the encoder needs torch, which would stay
    mapped in the server for good (hundreds of MB) for a file written once per data folder.
    """
    if "torch" in sys.modules:
        export_embedder(path, size, arch, weights, stages)
        return
    command = [sys.executable, "-m", "models.embedder", str(path), "--size", str(size), "--arch", arch]
    command += ["--weights", str(weights)] if weights is not None else []
    command += ["--stages"] if stages else []
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"exporting the {arch} encoder failed: {(done.stderr or done.stdout).strip()[-2000:]}")


class Embedder:
    """Turns PIL images into L2-normalised embeddings, in batches."""

    def __init__(
        self,
        data_dir: Path,
        size: int = EMBED_SIZE,
        threads: int = 2,
        arch: str = DEFAULT_ARCH,
        weights=None,
        stages: bool = False,
    ):
        self.size = size
        self.spec = spec_for(arch)
        self.key = embedder_key(size, arch, stages)
        path = Path(data_dir) / "embedder" / f"{self.key}.onnx"
        if not path.exists():
            export_embedder_once(path, size, arch, weights, stages)
        self._session = cpu_session(path, threads)

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        """(N, D) float32 embeddings, each of unit length (D: 1280 for Lite0, 1,408 with stages)."""
        batch = np.stack([prepare(image, self.size, self.spec.mean, self.spec.std) for image in images])
        return _unit_vectors(self._session.run(None, {"x": batch})[0])


class EmbeddingModelError(SettingError):
    """The operator's embedding model cannot be used; the sentence says what is wrong and what to do."""


def file_embedder_key(digest: str, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> str:
    """The name a model file's embeddings are stored under: "file-<SHA-256, 12 hex>-<size>"."""
    key = f"file-{digest[:12]}-{size}"
    # Other pixels make other embeddings: a normalisation other than ImageNet's is named too, so fixing a
    # wrong LOUPE_EMBEDDING_MEAN embeds anew rather than mixing old vectors with new ones.
    normalisation = (tuple(float(v) for v in mean), tuple(float(v) for v in std))
    if normalisation != (IMAGENET_MEAN, IMAGENET_STD):
        key += "-n" + hashlib.sha256(repr(normalisation).encode()).hexdigest()[:6]
    return key


class FileEmbedder:
    """An operator's ONNX image encoder with Embedder's interface (key, size, embed), checked when made."""

    def __init__(self, path: Path, size: int = EMBED_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD, threads: int = 2):
        self.path = Path(path)
        self.size = size
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self._check_settings()
        self.key = file_embedder_key(self._file_digest(), size, self.mean, self.std)
        self._session = self._load(threads)
        self._input, self._one_at_a_time = self._check_input()
        self._output, self.dimension = self._check_output()

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        """(N, D) float32 embeddings, each of unit length; a feature-map output is averaged over its positions."""
        if not images:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batch = np.stack([prepare(image, self.size, self.mean, self.std) for image in images])
        return _unit_vectors(self._run(batch, [self._output])[0])

    # --- the checks, in the order a person would fix them -----------------------------------------

    def _refuse(self, problem: str) -> EmbeddingModelError:
        return EmbeddingModelError(f"the embedding model {self.path} {problem}")

    def _check_settings(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise self._refuse(
                f"cannot take {self.size!r} px images: set LOUPE_EMBEDDING_SIZE to a whole number above 0"
            )
        for name, values in (("MEAN", self.mean), ("STD", self.std)):
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise self._refuse(f"needs three numbers in LOUPE_EMBEDDING_{name} (red, green, blue), not {values}")
        if min(self.std) <= 0:
            raise self._refuse(f"needs LOUPE_EMBEDDING_STD above zero on every channel, not {self.std}")

    def _file_digest(self) -> str:
        if self.path.is_dir():
            raise self._refuse("is a folder: set LOUPE_EMBEDDING_MODEL to the .onnx file itself")
        if not self.path.is_file():
            raise self._refuse(
                "does not exist: set LOUPE_EMBEDDING_MODEL to an ONNX image-embedding model file "
                "(or leave it empty to rank with the built-in Lite0 embeddings)"
            )
        digest = hashlib.sha256()
        try:
            with self.path.open("rb") as file:
                while chunk := file.read(1 << 20):
                    digest.update(chunk)
        except OSError as error:
            raise self._refuse(f"cannot be read ({error.strerror}): check its permissions") from None
        return digest.hexdigest()

    def _load(self, threads: int):
        try:
            # From the path, not the bytes hashed: a large model keeps its weights in files beside it.
            return cpu_session(self.path, threads)
        except Exception as error:  # onnxruntime raises one class per failure; every one means "cannot load"
            raise self._refuse(f"is not an ONNX model onnxruntime can load: {_short_reason(error)}") from None

    def _check_input(self) -> tuple[str, bool]:
        """The input's name, and whether the model takes one image per run (a batch axis fixed at 1)."""
        inputs = self._session.get_inputs()
        wanted = "Loupe needs one image input (batch, 3, height, width)"
        if len(inputs) != 1:
            described = ", ".join(f"{i.name} {_shape_text(i.shape)}" for i in inputs)
            raise self._refuse(f"takes {len(inputs)} inputs ({described}); {wanted}")
        (image_input,) = inputs
        shape = list(image_input.shape or [])
        if image_input.type != "tensor(float)":
            raise self._refuse(f"takes {image_input.type} input; {wanted} of float32")
        if len(shape) != 4 or _fixed(shape[1]) not in (None, 3):
            channels_last = len(shape) == 4 and _fixed(shape[3]) == 3
            hint = " (it takes channels last: export it to take channels first)" if channels_last else ""
            raise self._refuse(f"takes input of shape {_shape_text(shape)}; {wanted}{hint}")
        batch, height, width = _fixed(shape[0]), _fixed(shape[2]), _fixed(shape[3])
        if batch not in (None, 1):
            raise self._refuse(
                f"takes batches of exactly {batch} images; export it with a dynamic batch axis "
                "(torch.onnx.export's dynamic_axes={name: {0: 'batch'}})"
            )
        if height is not None and width is not None and height != width:
            raise self._refuse(
                f"takes {height}×{width} images; Loupe feeds square images, so export it for a square "
                "(or dynamic) input size"
            )
        side = height or width
        if side is not None and side != self.size:
            raise self._refuse(
                f"takes {side}×{side} images, not {self.size}×{self.size}: set LOUPE_EMBEDDING_SIZE={side}"
            )
        return image_input.name, batch == 1

    def _check_output(self) -> tuple[str, int]:
        """The output that holds the embedding, and its length, from a real run on plain grey images."""
        grey = Image.new("RGB", (self.size, self.size), (128, 128, 128))
        count = 1 if self._one_at_a_time else 2
        batch = np.stack([prepare(grey, self.size, self.mean, self.std)] * count)
        names = [output.name for output in self._session.get_outputs()]
        try:
            results = self._session.run(names, {self._input: batch})
        except Exception as error:  # a graph that fails on a well-formed batch cannot embed anything
            raise self._refuse(
                f"fails on a batch of {count} {self.size}×{self.size} images: {_short_reason(error)}"
            ) from None
        # A CLIP export also returns its token states, a DINOv2 export its patch tokens first: take the
        # first (batch, features) output, else the first feature map.
        usable = [
            (name, np.asarray(result))
            for rank in (2, 4)
            for name, result in zip(names, results, strict=True)
            if np.ndim(result) == rank and np.shape(result)[0] == count and np.shape(result)[1] >= 1
        ]
        if not usable:
            described = ", ".join(
                f"{name} {_shape_text(list(np.shape(r)))}" for name, r in zip(names, results, strict=True)
            )
            raise self._refuse(
                f"returns shape {described} for {count} images; Loupe needs (batch, features) or "
                "(batch, features, h, w)"
            )
        name, result = usable[0]
        if not np.issubdtype(result.dtype, np.floating):
            raise self._refuse(f"returns {result.dtype} values in {name}; Loupe needs floating-point features")
        if not np.isfinite(result).all():
            raise self._refuse(
                f"returns NaN or infinite values in {name} for plain grey images; check how it was exported"
            )
        return name, int(result.shape[1])

    def _run(self, batch: np.ndarray, names: list[str]) -> list[np.ndarray]:
        if not self._one_at_a_time:
            return self._session.run(names, {self._input: batch})
        runs = [self._session.run(names, {self._input: batch[i : i + 1]}) for i in range(len(batch))]
        return [np.concatenate([run[k] for run in runs]) for k in range(len(names))]


UNIT_EPSILON = 1e-12  # a zero vector stays zero instead of dividing by zero (models/head_onnx.py does the same)


def _unit_vectors(output: np.ndarray) -> np.ndarray:
    """(N, D) float32 rows of unit length; a (N, D, h, w) feature map is averaged over h and w first."""
    vectors = (output.mean(axis=(2, 3)) if output.ndim == 4 else output).astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), UNIT_EPSILON)


def _fixed(dim) -> int | None:
    """A dimension's size when the model fixes it; None when it is named or unknown (dynamic)."""
    return dim if isinstance(dim, int) and dim > 0 else None


def _shape_text(shape) -> str:
    return "[" + ", ".join("?" if dim is None else str(dim) for dim in shape) + "]"


def _short_reason(error: Exception) -> str:
    """onnxruntime's message on one line, without its error-code prefix or the path we already name."""
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", str(error).strip())
    text = re.sub(r"^Load model from .*? failed:", "", text)
    text = " ".join(text.split()) or type(error).__name__
    return text if len(text) <= 200 else text[:199] + "…"


# The last model user_embedder checked, by what identifies its file and settings: the quick loop rescores
# often, and hashing, loading and test-running a large encoder each time would cost seconds.
_last_checked: dict[tuple, FileEmbedder | EmbeddingModelError] = {}
_last_checked_lock = threading.Lock()


def user_embedder(settings: Settings, threads: int = 2) -> FileEmbedder | None:
    """The operator's embedding model, checked (EmbeddingModelError if unusable); None when none is set."""
    if settings.embedding_model is None:
        return None
    path = Path(settings.embedding_model)
    try:
        found = path.stat()
        identity = (
            str(path.resolve()),
            found.st_ino,
            found.st_size,
            found.st_mtime_ns,
            found.st_ctime_ns,
            settings.embedding_size,
            tuple(settings.embedding_mean),
            tuple(settings.embedding_std),
            threads,
        )
    except OSError:
        identity = None  # FileEmbedder says what is wrong
    with _last_checked_lock:
        if identity in _last_checked:
            outcome = _last_checked[identity]
            if isinstance(outcome, EmbeddingModelError):
                raise outcome
            return outcome
    # The verdict on an unchanged file is kept, refusal included: the quick loop asks every tick, and a
    # large file that fails its check would otherwise be hashed and loaded again each time.
    try:
        outcome = FileEmbedder(path, settings.embedding_size, settings.embedding_mean, settings.embedding_std, threads)
    except EmbeddingModelError as error:
        outcome = error
    with _last_checked_lock:
        _last_checked.clear()
        if identity is not None:
            _last_checked[identity] = outcome
    if isinstance(outcome, EmbeddingModelError):
        raise outcome
    return outcome


if __name__ == "__main__":  # export_embedder_once's child process
    import argparse

    parser = argparse.ArgumentParser(description="export a backbone's pooled ImageNet body as ONNX")
    parser.add_argument("path", type=Path)
    parser.add_argument("--size", type=int, default=EMBED_SIZE)
    parser.add_argument("--arch", default=DEFAULT_ARCH)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--stages", action="store_true")
    args = parser.parse_args()
    export_embedder(args.path, args.size, args.arch, args.weights, args.stages)
