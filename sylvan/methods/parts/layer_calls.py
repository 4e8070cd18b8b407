"""Which of a network's layers a forward pass calls, and in what order: `gpm` projects the
gradients of the linear and convolution layers in that order (the first reads the network's
input, the last gives its output), and `hat` gates the units of each layer but the last."""

from __future__ import annotations

import torch
from torch import nn

from sylvan.methods.core.supervised import evaluating


def layer_calls(model: nn.Module, layers: dict[str, nn.Module], input_shape: tuple[int, ...]) -> list[str]:
    """The names of `layers`, once per call, in the order a forward pass of `model` calls them
    (on one zero input, in evaluation mode, without gradients): a layer called twice appears twice."""
    calls: list[str] = []
    handles = [layer.register_forward_pre_hook(lambda *_, name=name: calls.append(name))
               for name, layer in layers.items()]
    device = next(model.parameters()).device
    try:
        with evaluating(model) as evaluated:
            evaluated(torch.zeros(1, *input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return calls


def forward_order(model: nn.Module, layers: dict[str, nn.Module], input_shape: tuple[int, ...]) -> list[str]:
    """The names of `layers` in the order a forward pass of `model` first reaches them."""
    return list(dict.fromkeys(layer_calls(model, layers, input_shape)))
