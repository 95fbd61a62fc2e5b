"""Pretrained backbones with offline weights. A backbone without weights is an error, never random."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from models.specs import (  # noqa: F401 (re-exported)
    DEFAULT_ARCH,
    HALF_STATS,
    IMAGENET_STATS,
    SPECS,
    BackboneError,
    BackboneSpec,
    lite0_weights_path,
    resolve_weights,
    spec_for,
)


class Lite0Body(nn.Module):
    """EfficientNet-Lite0 up to its last feature map (N, 1280, H/32, W/32)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.extract_features(x)


def _load_state(path: Path) -> dict:
    if not path.is_file():
        raise BackboneError(f"the weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise BackboneError(f"the weights file {path} cannot be read: {error}") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def build_body(arch: str = DEFAULT_ARCH, weights: Path | None = None) -> nn.Module:
    """The pretrained feature extractor for arch, loaded from local weights only."""
    state = _load_state(resolve_weights(arch, weights))
    if arch == "efficientnet_lite0":
        from efficientnet_lite_pytorch import EfficientNet

        network = EfficientNet.from_name("efficientnet-lite0")
        network.load_state_dict(state)
        return Lite0Body(network)
    import torchvision

    network = getattr(torchvision.models, arch)(weights=None)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise BackboneError(f"{weights} does not hold {arch} weights: {str(error)[:300]}") from None
    return nn.Sequential(*list(network.children())[:-2])
