"""Multi-layer perceptron over flattened inputs (the Seq-MNIST backbone of the DER paper)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten, then `Linear -> ReLU` for each hidden size, then a linear classifier.

    `continual_world`: Continual World's body instead (its SAC's networks): `Linear -> LayerNorm ->
    tanh` for the first hidden size, `Linear -> leaky ReLU (slope 0.2)` for the others."""

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, hidden_sizes: Sequence[int] = (100, 100),
        continual_world: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for k, hidden in enumerate(hidden_sizes):
            if not continual_world:
                layers += [nn.Linear(width, hidden), nn.ReLU()]
            elif k == 0:
                layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.Tanh()]
            else:
                layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.feature_dim = width
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases, as the MNIST MLP of the DER paper's code."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
