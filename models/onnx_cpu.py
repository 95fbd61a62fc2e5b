"""ONNX Runtime sessions on the CPU, made one way for the predictor and the embedders."""

from __future__ import annotations

from pathlib import Path


def cpu_session(path: Path, threads: int):
    """A CPU session on path with `threads` intra-op threads that do not spin while idle.

    Spinning idle threads would steal the cores a training run (or the web process beside it) needs.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
