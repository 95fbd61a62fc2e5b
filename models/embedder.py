"""Backbone embeddings for every image: Lite0's pooled 1280-d features, computed with ONNX Runtime."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from models.backbones import HALF_STATS
from models.preprocess import prepare

EMBED_SIZE = 224
EMBED_DIM = 1280


def embedder_key(size: int = EMBED_SIZE) -> str:
    """The name embeddings of this kind are stored under."""
    return f"lite0-{size}"


def export_embedder(path: Path, size: int = EMBED_SIZE) -> None:
    """Write the ImageNet Lite0 body with global average pooling as ONNX (atomically)."""
    import torch
    from torch import nn

    from models.backbones import build_body

    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = build_body()

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

    def __init__(self, data_dir: Path, size: int = EMBED_SIZE, threads: int = 2):
        import onnxruntime

        self.size = size
        self.key = embedder_key(size)
        path = Path(data_dir) / "embedder" / f"{self.key}.onnx"
        if not path.exists():
            export_embedder(path, size)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        """(N, 1280) float32 embeddings, each of unit length."""
        batch = np.stack([prepare(image, self.size, *HALF_STATS) for image in images])
        vectors = self._session.run(None, {"x": batch})[0].astype(np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
