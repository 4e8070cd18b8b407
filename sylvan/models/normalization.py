"""Input normalization as the first layer of a backbone.

The rehearsal papers' reference code normalizes CIFAR images by the dataset's per-channel mean
and standard deviation after augmenting them (crop padding is black, not the mean colour), and
buffers keep the images as they came. Normalizing inside the network gives exactly that order
for every input the network sees, new, replayed or evaluated, whatever path a method takes to
the network (`model(x)`, `model.features(x)`), while settings and buffers keep pixels in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class InputNormalization(nn.Module):
    """(x - mean) / std per channel (dimension 1 of a batch); the statistics are buffers, so
    they follow the network to its device and into its checkpoints."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not mean:
            raise ValueError(f"one mean and one std per channel, got {len(mean)} and {len(std)}")
        if min(std) <= 0:
            raise ValueError(f"standard deviations must be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)  # channels on dimension 1, whatever follows
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


def with_input_normalization(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """`model` normalizing its inputs first. A backbone with a `features` module (every built-in
    one: `forward` is `classifier(features(x))`) gets the normalization as the first layer of
    `features`, so that methods calling `features` directly see normalized inputs too; any other
    network is wrapped whole."""
    normalization = InputNormalization(mean, std)
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        model.features = nn.Sequential(normalization, *features)
    elif isinstance(features, nn.Module):
        model.features = nn.Sequential(normalization, features)
    else:
        model = nn.Sequential(normalization, model)
    return model
