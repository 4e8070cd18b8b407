"""A cosine-normalized classifier, and features that end before their last ReLU (Hou et al.,
"Learning a Unified Classifier Incrementally via Rebalancing", CVPR 2019: `lucir`).

With a linear classifier, the classes a network trained on last have the largest weights and
biases, and win; comparing the directions of the features and of each class's weight vector
removes that imbalance. The features' last ReLU goes too: after it they could only take
non-negative values, and their cosine with a class vector only part of its range.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.models.resnet import BasicBlock


def has_feature_layers(model: nn.Module) -> bool:
    """Whether `model` splits into a `features` module and a classifier over `feature_dim`
    features (every built-in backbone): what a method needs to put its own classifier there."""
    return isinstance(getattr(model, "features", None), nn.Module) and hasattr(model, "feature_dim")


def require_feature_layers(model: nn.Module, name: str, needed_by: str) -> None:
    """Raise `ConfigurationError` unless `model` (the backbone `name`) has feature layers
    (`has_feature_layers`); `needed_by` says who needs them and why, for the message ("scr learns
    and classifies by the backbone's features")."""
    if not has_feature_layers(model):
        raise ConfigurationError(
            f"{needed_by}, so it needs a backbone with `features` and `feature_dim` (every built-in one), which "
            f"{name} lacks"
        )


class CosineClassifier(nn.Module):
    """sigma * cos(w_c, f): one weight vector per class, no bias, and a scale sigma, which the
    cross-entropy needs since a cosine lies in [-1, 1]: learned from 1 (LUCIR), or fixed when
    `scale` is given (ER-AML's classifier, whose scale is 10)."""

    def __init__(self, in_features: int, num_classes: int, scale: float | None = None) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features).uniform_(-bound, bound))
        if scale is None:
            self.sigma = nn.Parameter(torch.ones(()))
        else:
            self.register_buffer("sigma", torch.tensor(float(scale)))

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        """cos(w_c, f) for every sample and class, (batch, classes)."""
        return F.linear(F.normalize(features.flatten(1), dim=1), F.normalize(self.weight, dim=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.sigma * self.cosine(features)


def remove_last_relu(features: nn.Module) -> bool:
    """Make the `nn.Sequential` `features` end before its last ReLU: a trailing `nn.ReLU` (layers
    without parameters after it, pooling and flattening, stay) becomes an identity, and a last
    residual block keeps its output before its ReLU. False where there is none to remove (not a
    sequence, or another layer with parameters after the last ReLU)."""
    if not isinstance(features, nn.Sequential):
        return False
    for index in range(len(features) - 1, -1, -1):
        layer = features[index]
        if isinstance(layer, nn.ReLU):
            features[index] = nn.Identity()
            return True
        if isinstance(layer, BasicBlock):
            layer.output_relu = False
            return True
        if isinstance(layer, nn.Sequential):
            return remove_last_relu(layer)
        if any(True for _ in layer.parameters()):
            return False
    return False
