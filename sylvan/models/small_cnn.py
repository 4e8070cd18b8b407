"""A small convolutional network for small images (two conv blocks, one hidden linear layer)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv(32)-pool-conv(64)-pool-linear(128)-classifier; works for any input of 8x8 or more."""

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        channels = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4, 128),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(128, num_classes)
        self.feature_dim = 128

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
