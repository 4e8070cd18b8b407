"""Backbones: networks that map an input of a given shape to one logit per class."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sylvan.errors import unknown_name
from sylvan.models.mlp import MLP
from sylvan.models.normalization import InputNormalization, with_input_normalization
from sylvan.models.resnet import ResNet18
from sylvan.models.small_cnn import SmallCNN

BackboneFactory = Callable[[tuple[int, ...], int], nn.Module]

BACKBONES: dict[str, BackboneFactory] = {
    "mlp": lambda shape, n: MLP(shape, n, hidden_sizes=(100, 100)),
    "mlp_400": lambda shape, n: MLP(shape, n, hidden_sizes=(400, 400)),
    "mlp_16": lambda shape, n: MLP(shape, n, hidden_sizes=(16,)),  # one hidden layer of 16: a network that underfits
    "cnn": lambda shape, n: SmallCNN(shape, n),
    "resnet18": lambda shape, n: ResNet18(shape, n, width=64),
    "resnet18_reduced": lambda shape, n: ResNet18(shape, n, width=20),
}


def build_backbone(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Instantiate the backbone registered as `name` for inputs of `input_shape`."""
    if name not in BACKBONES:
        raise unknown_name("backbone", name, list(BACKBONES))
    return BACKBONES[name](tuple(input_shape), num_classes)


__all__ = [
    "BACKBONES", "MLP", "InputNormalization", "ResNet18", "SmallCNN", "build_backbone", "with_input_normalization",
]
