"""The CPU predictor: ONNX Runtime (torch as the fallback) behind one swappable reference."""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from errors import Conflict
from models.onnx_cpu import cpu_session, release_free_memory
from models.preprocess import prepare
from models.registry import CLASSES_FILE, FASTAI_FILE, ONNX_FILE, model_inputs, read_meta


class NoModelYet(Conflict):
    """No version has been promoted, so there is nothing to predict with."""

    def __init__(self, message: str = "No model has been trained yet, so nothing can be predicted; try again later."):
        super().__init__(message)


TRIM_EVERY_S = 1.0  # a predict-only process trims its free memory at most this often, and only when idle


class NoOnnxModel(Exception):
    """A version without model.onnx, offered to a process that never loads torch."""


@dataclass(frozen=True)
class Prediction:
    """Labels with probabilities, most likely first, and the version that made them."""

    model_version: str
    predictions: list[tuple[str, float]]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class LoadedModel:
    """One model version, fully loaded; predicts from PIL images."""

    def __init__(self, folder: Path, threads: int = 2, onnx_only: bool = False):
        folder = Path(folder)
        meta = read_meta(folder)
        self.version: str = meta["version"]
        self.kind: str = meta.get("kind", "finetune")
        self.classes: list[str] = json.loads((folder / CLASSES_FILE).read_text())
        self.size: int = int(meta["size"])
        self.mean, self.std = meta["mean"], meta["std"]
        # What the graph takes: one image per input, each prepared at its own size (a head version has one
        # input per encoder of the ranking's features; a fine-tuned network has one, "x").
        self.inputs: list[dict] = model_inputs(meta)
        self.backend = "onnx" if meta.get("onnx") and (folder / ONNX_FILE).exists() else "torch"
        if self.backend == "torch" and (onnx_only or len(self.inputs) > 1):
            raise NoOnnxModel(
                f"model version {self.version} has no ONNX model (its export failed), and this process serves "
                "ONNX only; the full app can serve it from the fastai export"
            )
        if self.backend == "onnx":
            self._session = cpu_session(folder / ONNX_FILE, threads, lean=onnx_only)
        else:
            from fastai.learner import load_learner

            self._model = load_learner(folder / FASTAI_FILE, cpu=True).model.eval()
        # Warm up before serving.
        self.logits(tuple(np.zeros((1, 3, i["size"], i["size"]), dtype=np.float32) for i in self.inputs))

    def prepare(self, image: Image.Image) -> tuple[np.ndarray, ...]:
        """One image as the graph's inputs: a (3, size, size) array per input."""
        return tuple(prepare(image, given["size"], given["mean"], given["std"]) for given in self.inputs)

    def logits(self, batch: tuple[np.ndarray, ...]) -> np.ndarray:
        """Raw network outputs for one (N, 3, size, size) batch per input."""
        if self.backend == "onnx":
            return self._session.run(
                None, {given["name"]: part for given, part in zip(self.inputs, batch, strict=True)}
            )[0]
        import torch

        with torch.no_grad():
            return self._model(torch.from_numpy(batch[0])).numpy()

    def probabilities(self, images: list[Image.Image]) -> np.ndarray:
        """Class probabilities, one row per image."""
        prepared = [self.prepare(image) for image in images]
        return softmax(self.logits(stacked(prepared)))

    def ranked(self, probabilities: np.ndarray, top: int | None = None) -> Prediction:
        """One image's probabilities as a Prediction: classes most likely first (all, or the top few)."""
        order = np.argsort(-probabilities)[:top]
        return Prediction(self.version, [(self.classes[i], float(probabilities[i])) for i in order])

    def predict(self, image: Image.Image, top: int | None = None) -> Prediction:
        """The classes sorted by probability (all, or the top few)."""
        return self.ranked(self.probabilities([image])[0], top)


def stacked(prepared: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Images prepared one by one (LoadedModel.prepare) as one batch per input."""
    return tuple(np.stack(parts) for parts in zip(*prepared, strict=True))


@dataclass
class _Job:
    """One prepared image waiting for the batch runner, with the model it was prepared for."""

    model: LoadedModel
    arrays: tuple[np.ndarray, ...]
    done: threading.Event = field(default_factory=threading.Event)
    probabilities: np.ndarray | None = None
    error: Exception | None = None


class Predictor:
    """Holds the serving model; swap() loads the next one fully, then replaces the reference.

    Requests prepare their image in their own thread, then one runner thread feeds the network
    whatever requests are waiting as one batch (a batch of 8 costs about 3 ms an image instead of
    5 on two cores). No request waits for a batch to fill: the runner takes what is there.
    """

    def __init__(self, threads: int = 2, max_batch: int = 8, onnx_only: bool = False):
        self.threads = threads
        self.max_batch = max_batch
        # A predict-only process: never the fastai fallback (so never torch), and lean ONNX sessions.
        self.onnx_only = onnx_only
        self._current: LoadedModel | None = None
        self._swap_lock = threading.Lock()  # only swaps queue on it; predictions never do
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._runner = threading.Thread(target=self._run_batches, name="loupe-predict", daemon=True)
        self._runner.start()

    @property
    def version(self) -> str | None:
        """The version serving now, or None."""
        current = self._current
        return current.version if current else None

    def swap(self, folder: Path) -> str:
        """Load the version in folder, warm it, and make it the serving one."""
        with self._swap_lock:
            loaded = LoadedModel(folder, self.threads, self.onnx_only)
            self._current = loaded  # one reference assignment: requests in flight keep the old model
        if self.onnx_only:
            release_free_memory()  # the load's copies, and the old model once its last request ends
        return loaded.version

    def predict(self, image: Image.Image, top: int | None = None) -> Prediction:
        """Predict with whichever model is serving at the moment of the call."""
        model = self._current
        if model is None:
            raise NoModelYet()
        job = _Job(model, model.prepare(image))
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return model.ranked(job.probabilities, top)

    def _run_batches(self) -> None:
        trimmed_at = time.monotonic()
        while True:
            if self.onnx_only and self._jobs.empty() and time.monotonic() - trimmed_at > TRIM_EVERY_S:
                # Idle for now: hand back what the last burst's decoded uploads and activations left.
                release_free_memory()
                trimmed_at = time.monotonic()
            jobs = [self._jobs.get()]
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            by_model: dict[int, list[_Job]] = {}
            for job in jobs:  # after a swap, queued jobs still run on the model they were prepared for
                by_model.setdefault(id(job.model), []).append(job)
            for group in by_model.values():
                try:
                    probabilities = softmax(group[0].model.logits(stacked([job.arrays for job in group])))
                    for job, row in zip(group, probabilities, strict=True):
                        job.probabilities = row
                except Exception as error:  # handed to each waiting request
                    for job in group:
                        job.error = error
                for job in group:
                    job.done.set()
