"""Weights held at their values while the rest of their parameter trains (`packnet`'s earlier
stages' weights, `lucir`'s old classes' classifier rows), and batch norm statistics held as they are.

A zero gradient alone does not hold a weight: momentum and weight decay move it without one. So
the gradient is zeroed after the backward pass (what clips or records gradients never sees it)
and the value put back after the optimizer's step. Both by multiplying with 0 / 1 masks, not by
`torch.where` / `masked_fill_`, which take 20 to 40 times as long on the CPU (a third of an MLP's
step at batch 10). A non-finite gradient stays so where it is held: the run has diverged then,
and `SupervisedMethod.check_weights_finite` stops it at the stage's end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class HeldWeights:
    """The weights of some parameters held at the values they have when `hold` is called."""

    def __init__(self) -> None:
        # (parameter, 1 where a weight trains and 0 where it is held, the held values and 0 elsewhere)
        self._held: list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]] = []

    def hold(self, masks: dict[nn.Parameter, torch.Tensor]) -> None:
        """From now on, hold the weights where each parameter's boolean mask is true (replacing
        what was held before)."""
        self._held = []
        for parameter, mask in masks.items():
            mask = mask.to(parameter.device)
            if bool(mask.any()):
                self._held.append((parameter, (~mask).to(parameter.dtype), parameter.detach() * mask))

    def release(self) -> None:
        self._held = []

    def __bool__(self) -> bool:
        return bool(self._held)

    def zero_gradients(self) -> None:
        """Call between the backward pass and the optimizer's step."""
        for parameter, trains, _ in self._held:
            if parameter.grad is not None:
                parameter.grad.mul_(trains)

    def restore(self) -> None:
        """Call after the optimizer's step."""
        if not self._held:
            return
        with torch.no_grad():
            for parameter, trains, held in self._held:
                parameter.mul_(trains).add_(held)


@contextmanager
def batch_norm_statistics_held(model: nn.Module) -> Iterator[None]:
    """The batch norm layers of `model` in evaluation mode for the block, so that training steps
    normalize with their running statistics and leave them as they are; each layer's mode is put
    back afterwards. The engine keeps the modes it finds when a fit starts."""
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    modes = [module.training for module in norms]
    for module in norms:
        module.eval()
    try:
        yield
    finally:
        for module, training in zip(norms, modes):
            module.train(training)
