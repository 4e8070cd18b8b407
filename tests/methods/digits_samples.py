"""Small hand-made inputs for the class-incremental methods' unit tests on digits' shapes (8x8
grey images, 10 classes)."""

from __future__ import annotations

import torch


def mask(*classes: int) -> torch.Tensor:
    """A boolean mask over digits' 10 classes, true at `classes`."""
    out = torch.zeros(10, dtype=torch.bool)
    out[list(classes)] = True
    return out


def samples(labels: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 1x8x8 inputs in [0, 1), one per label, drawn with `seed`; and the labels."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(len(labels), 1, 8, 8, generator=generator), torch.tensor(labels)
