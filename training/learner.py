"""The fastai Learner around an offline-pretrained backbone, and the callback that reports progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fastai.callback.core import Callback, CancelFitException
from fastai.learner import Learner
from fastai.metrics import accuracy, error_rate
from fastai.torch_core import params
from fastai.vision.learner import create_head
from torch import nn

from models.backbones import build_body, spec_for


def body_and_head_splitter(model: nn.Sequential) -> list:
    """Two parameter groups, so freeze() trains only the head and slice() spreads learning rates."""
    return [params(model[0]), params(model[1])]


def build_learner(dls, arch: str, weights: Path | None = None) -> Learner:
    """A Learner whose model is Sequential(pretrained body, fastai head)."""
    spec = spec_for(arch)
    model = nn.Sequential(build_body(arch, weights), create_head(spec.n_features, dls.c))
    learn = Learner(
        dls, model, splitter=body_and_head_splitter, metrics=[error_rate, accuracy], cbs=[KeepBodyBatchNormInEval()]
    )
    learn.freeze()
    return learn


class KeepBodyBatchNormInEval(Callback):
    """The pretrained body's BatchNorm layers keep their ImageNet statistics, frozen or not.

    In train mode they would normalise with the batch's statistics, which for images unlike
    ImageNet (the demo digits) differ so much that the head's inputs change under it and unfreezing
    undoes the frozen epochs (measured: 23% → 78% error). Keras' EfficientNet fine-tuning guide
    gives the same advice. Their scale and shift still train once unfrozen.
    """

    order = 1

    def before_train(self):
        for module in self.model[0].modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


class ReportProgress(Callback):
    """Sends progress to report(dict) -> status at most every interval_s; stops when told to cancel."""

    order = 60  # after the Recorder, whose values it reads

    def __init__(self, report: Callable[[dict], str], interval_s: float = 1.0):
        self.report = report
        self.interval_s = interval_s
        self.phase = "training"
        self.history: list[dict] = []
        self.cancelled = False
        self._last_sent = 0.0

    def _send(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_sent < self.interval_s:
            return
        self._last_sent = now
        progress = {
            "phase": self.phase,
            "epoch": self.epoch + 1,
            "n_epochs": self.n_epoch,
            "batch": self.iter + 1 if self.training else 0,
            "n_batches": len(self.dls.train),
            "train_loss": float(self.smooth_loss) if self.smooth_loss is not None else None,
            "history": self.history,
        }
        if self.report(progress) == "cancelling":
            self.cancelled = True
            raise CancelFitException()

    def before_epoch(self):
        self._epoch_started = time.monotonic()

    def after_batch(self):
        if self.training:
            self._send()

    def after_epoch(self):
        if self.phase == "lr_find":  # the finder's passes are not training epochs
            return
        names = self.recorder.metric_names[1:-1]  # drop 'epoch' and 'time'
        values = dict(zip(names, self.recorder.values[-1], strict=True))
        seconds = time.monotonic() - self._epoch_started
        self.history.append({"phase": self.phase, **{k: float(v) for k, v in values.items()}, "seconds": seconds})
        self._send(force=True)
