"""ResNet-18 with the CIFAR stem (3x3 convolution, no max-pool), as the rehearsal papers use on CIFAR
and on Tiny ImageNet (64x64: global average pooling takes either size).

`width=64` is the standard network (DER, Buzzega et al. 2020); `width=20` is the reduced
ResNet-18 of GEM / A-GEM (Lopez-Paz & Ranzato 2017; Chaudhry et al. 2019).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.output_relu = True  # False: the block's output is its pre-activation (`lucir`'s last block)

    def pre_activation(self, x: torch.Tensor, joining: torch.Tensor | None = None) -> torch.Tensor:
        """The block's output before its last ReLU: the residual branch plus the shortcut.
        `joining` (a progressive network's lateral, shaped as the block's output) is added to the
        residual branch before its second batch norm, which then normalizes it with the branch."""
        out = self.conv2(F.relu(self.bn1(self.conv1(x))))
        if joining is not None:
            out = out + joining
        return self.bn2(out) + self.shortcut(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pre_activation(x)
        return F.relu(out) if self.output_relu else out


class ResNet18(nn.Module):
    """ResNet-18 with a CIFAR stem; `features` ends in global average pooling."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: int = 64) -> None:
        super().__init__()
        channels = input_shape[0]
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        in_planes = width
        for i, planes in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            layers += [BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)]
            in_planes = planes
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_planes, num_classes)
        self.feature_dim = in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
