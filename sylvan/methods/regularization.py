"""What weight-regularization methods (`ewc`, `si`) share: a quadratic penalty that anchors each
weight with its own importance."""

from __future__ import annotations

import torch
from torch import nn


def weighted_squared_distance(
    model: nn.Module, importance: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]
) -> torch.Tensor:
    """sum_i importance_i * (w_i - anchor_i)^2 over the parameters of `model`. The importance and
    anchor tensors follow the model to its device once (in place in the dicts), not every step."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, weight in model.named_parameters():
        if importance[name].device != weight.device:
            importance[name] = importance[name].to(weight.device)
        if anchor[name].device != weight.device:
            anchor[name] = anchor[name].to(weight.device)
        total = total + (importance[name] * (weight - anchor[name]).pow(2)).sum()
    return total
