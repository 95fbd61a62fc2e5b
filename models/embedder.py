"""Backbone embeddings for every image: a registered backbone's pooled features, computed with ONNX Runtime.

The backbone comes from models/specs.py like a training run's (Lite0 by default, the one whose weights
ship offline); its embeddings are cached under "<short name>-<size>" (e.g. "lite0-224").
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from models.preprocess import prepare
from models.specs import DEFAULT_ARCH, spec_for

EMBED_SIZE = 224


def embedder_key(size: int = EMBED_SIZE, arch: str = DEFAULT_ARCH) -> str:
    """The name embeddings of this backbone and size are stored under."""
    return f"{spec_for(arch).short}-{size}"


def export_embedder(path: Path, size: int = EMBED_SIZE, arch: str = DEFAULT_ARCH, weights: Path | None = None) -> None:
    """Write the backbone's ImageNet body with global average pooling as ONNX (atomically)."""
    import torch
    from torch import nn

    from models.backbones import build_body

    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = build_body(arch, weights)

        def forward(self, x):
            return self.body(x).mean(dim=(2, 3))

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


class Embedder:
    """Turns PIL images into L2-normalised embeddings, in batches."""

    def __init__(
        self, data_dir: Path, size: int = EMBED_SIZE, threads: int = 2, arch: str = DEFAULT_ARCH, weights=None
    ):
        import onnxruntime

        self.size = size
        self.spec = spec_for(arch)
        self.key = embedder_key(size, arch)
        path = Path(data_dir) / "embedder" / f"{self.key}.onnx"
        if not path.exists():
            export_embedder(path, size, arch, weights)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        """(N, 1280) float32 embeddings, each of unit length."""
        batch = np.stack([prepare(image, self.size, self.spec.mean, self.spec.std) for image in images])
        vectors = self._session.run(None, {"x": batch})[0].astype(np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
