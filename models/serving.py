"""Serving: keeps the in-process predictor on the promoted version, and predicts from raw bytes."""

from __future__ import annotations

import logging
import threading

from context import Context
from db.model_versions import promoted_version
from models.imagecheck import decode_checked
from models.onnx_cpu import limit_allocator_arenas, release_free_memory
from models.predictor import Prediction, Predictor

log = logging.getLogger(__name__)


class Serving:
    """The predictor plus a watcher that swaps in whatever version the database says is promoted."""

    def __init__(self, context: Context, threads: int = 2, poll_s: float = 2.0, onnx_only: bool = False):
        self.context = context
        if onnx_only:
            limit_allocator_arenas()
        # A predict-only process batches at most 4: Lite0's activations for 8 kept about 20 MB more after a
        # load, for fewer requests/s on two cores (bench/http_load.py --processes 2: 198 → 226 rps).
        self.predictor = Predictor(threads, max_batch=4 if onnx_only else 8, onnx_only=onnx_only)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> str | None:
        """Swap to the promoted version if it is not the one serving; returns the serving version."""
        promoted = promoted_version(self.context.database)
        if promoted is not None and promoted.version != self.predictor.version:
            try:
                self.predictor.swap(self.context.settings.data_dir / promoted.path)
                log.info("now serving model %s", promoted.version)
            except Exception:  # keep serving the old model; the next poll tries again
                log.exception("could not load model %s", promoted.version)
        return self.predictor.version

    def start(self) -> None:
        """Sync now, then keep syncing in a background thread."""
        self.sync()
        self._thread = threading.Thread(target=self._watch, name="loupe-model-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the background thread."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.sync()
            except Exception:  # a database hiccup must not end the watcher
                log.exception("model watch failed")
            if self.predictor.onnx_only:
                release_free_memory()  # what a burst of uploads left behind, every poll

    def predict_bytes(self, data: bytes, top: int | None = None) -> Prediction:
        """Check the bytes like an import does, decode, predict (ImageRejected / NoModelYet on failure)."""
        settings = self.context.settings
        image = decode_checked(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
        return self.predictor.predict(image, top)
