"""ONNX Runtime sessions on the CPU, made one way for the predictor and the embedders."""

from __future__ import annotations

from pathlib import Path


def cpu_session(path: Path, threads: int, lean: bool = False):
    """A CPU session on path with `threads` intra-op threads that do not spin while idle.

    Spinning idle threads would steal the cores a training run (or the web process beside it) needs.
    lean: no memory-pattern planning, which keeps a block per batch shape it has seen (15 MB less under
    load for Lite0 at 128 px, batches up to 8; a few per cent slower): a predict-only process's choice.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_mem_pattern = not lean
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def limit_allocator_arenas(arenas: int = 2) -> None:
    """Let glibc's malloc keep at most `arenas` arenas (M_ARENA_MAX) instead of eight per core.

    Each thread that decodes an upload otherwise gets an arena of its own, and freed memory stays spread
    over them: a predict-only process under 16 clients grew 80 MB. A no-op where there is no glibc.
    """
    _libc_call("mallopt", -8, arenas)  # -8: M_ARENA_MAX


def _libc_call(name: str, *args: int) -> None:
    import ctypes
    import ctypes.util

    library = ctypes.util.find_library("c")
    if library:
        try:
            getattr(ctypes.CDLL(library), name)(*args)
        except (OSError, AttributeError):
            pass


def release_free_memory() -> None:
    """Hand memory the allocator holds but no object uses back to the system (glibc's malloc_trim).

    Loading a model leaves the parsed and the optimised graph's copies freed but kept: about 20 MB for
    Lite0, which a predict-only process would otherwise carry for good. A no-op where there is no glibc.
    """
    _libc_call("malloc_trim", 0)
