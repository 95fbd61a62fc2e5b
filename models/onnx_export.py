"""Exporting a trained network to ONNX for the CPU predictor, checked against torch."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)
MAX_ABS_DIFFERENCE = 1e-3


def export_onnx(model: nn.Module, size: int, path: Path) -> bool:
    """Write model as ONNX with a dynamic batch axis; False (and no file) if it fails or disagrees."""
    import onnxruntime

    model = model.eval().float().cpu().to(memory_format=torch.contiguous_format)
    sample = torch.randn(2, 3, size, size)
    try:
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        )
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        from_onnx = session.run(None, {"x": sample.numpy()})[0]
        with torch.no_grad():
            from_torch = model(sample).numpy()
        difference = float(np.abs(from_onnx - from_torch).max())
        if difference > MAX_ABS_DIFFERENCE:
            raise ValueError(f"ONNX and torch disagree by {difference:.2e}")
        return True
    except Exception as error:  # the predictor falls back to torch; the reason is logged
        log.warning("ONNX export failed, the torch model will serve instead: %s", error)
        Path(path).unlink(missing_ok=True)
        return False
