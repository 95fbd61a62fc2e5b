"""What a training run is asked to do: every default and every check on training parameters, declared once.

The launcher, the loop's policy, the worker and the CLI's help texts all read them from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from db.runs import FINETUNE, HEAD, RUN_KINDS
from errors import LoupeError
from models.specs import DEFAULT_ARCH

SIZE_STEP = 32  # the backbones downsample by 32: other sizes lose pixels at the edges


class BadTrainingRequest(LoupeError, ValueError):
    """Training parameters that cannot work, with a sentence saying which."""


@dataclass(frozen=True)
class TrainingDefaults:
    """CPU-sensible defaults for a fine-tune (the lesson's fine_tune: one frozen epoch, then unfrozen ones).

    Tried on the ranking's four datasets (digits, scripts, icons, emoji; clean labels): one run each of
    1 + 4 epochs, 160 px and learning rate 1e-3 moved the mean validation error by −3 to +4 points, but
    two runs of the same setting on the same data differ by as much (bench/train.py --before: 160 px
    erred more than 128 px on three datasets of four, where a first sweep had it erring less). No setting
    was reliably better, so the cheapest stays. The body's BatchNorm in train mode was far worse (60%
    against 32% mean error; training/learner.py KeepBodyBatchNormInEval). A head on the cached
    embeddings erred 18% and takes seconds: the gate serves a fine-tune only when it errs no more.
    """

    arch: str = DEFAULT_ARCH
    size: int = 128
    epochs: int = 2
    freeze_epochs: int = 1
    batch_size: int = 32
    lr: float = 2e-3
    lr_find_iterations: int = 30


DEFAULTS = TrainingDefaults()


def size_problem(size: int) -> str | None:
    """Why size cannot be an image size for training, or None when it can."""
    if size <= 0 or size % SIZE_STEP:
        return f"the image size must be a positive multiple of {SIZE_STEP} (got {size})"
    return None


def epochs_problem(epochs: int, freeze_epochs: int) -> str | None:
    """Why these epoch counts cannot make a run, or None when they can."""
    if epochs < 0 or freeze_epochs < 0 or epochs + freeze_epochs == 0:
        return "a retrain needs at least one epoch"
    return None


def run_params(kind: str = FINETUNE, **overrides) -> dict:
    """A run's parameters: the defaults overridden by whatever is not None; BadTrainingRequest if they cannot work.

    A head (kind "head") trains on the ranking's cached embeddings: it has no epochs, size or learning rate,
    so only promote and tolerance apply to it.
    """
    if kind not in RUN_KINDS:
        raise BadTrainingRequest(f"unknown kind of run {kind!r}; choose {' or '.join(RUN_KINDS)}")
    if kind == HEAD:
        given = {k: v for k, v in overrides.items() if v is not None}
        unused = sorted(k for k, v in given.items() if k not in ("promote", "tolerance") and v is not False)
        if unused:
            names = ", ".join(name.replace("_", " ") for name in unused)
            raise BadTrainingRequest(
                f"a head on the cached embeddings takes no {names}: those are fine-tuning settings"
            )
        return {"promote": given.get("promote", True)} | (
            {"tolerance": given["tolerance"]} if "tolerance" in given else {}
        )
    params = {k: v for k, v in asdict(DEFAULTS).items() if k != "arch"}
    params |= {"find_lr": False, "weights": None, "promote": True}
    params.update({k: v for k, v in overrides.items() if v is not None})
    if params["find_lr"] and overrides.get("lr") is None:
        params["lr"] = None  # the finder's suggestion decides
    if params["weights"] is not None:
        params["weights"] = str(Path(params["weights"]).resolve())
    problem = size_problem(int(params["size"])) or epochs_problem(int(params["epochs"]), int(params["freeze_epochs"]))
    if problem:
        raise BadTrainingRequest(problem)
    return params
