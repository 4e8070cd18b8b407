"""Each weight's share of the decrease of a loss along the training path (Zenke, Poole & Ganguli,
ICML 2017): omega_i = sum over steps of -g_i * (w_i(after the step) - w_i(before it)), the
first-order change of the loss that weight i's own moves made, with g the gradient of the step.

`si` divides it, at each task's end, by how far each weight travelled over the task; `rwalk`
divides it, every few steps, by the distance travelled in the Fisher metric. Both credit each
step with a gradient of their choosing (SI's clipped one, RWalk's of the task loss alone, not of
its penalty), which they hand to `record` after the backward pass; `accumulate` then adds the
step's terms once the optimizer has moved the weights.
"""

from __future__ import annotations

import torch
from torch import nn

from sylvan.methods.core.regularization import on_device_of


class PathIntegral:
    """The running omega of every parameter of `model`, by name, since the last `reset`."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.total = {name: torch.zeros_like(weight.detach()) for name, weight in model.named_parameters()}
        self._before: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None

    def record(self, gradients: dict[str, torch.Tensor]) -> None:
        """Before the optimizer's step: the gradient each weight is credited with (weights without
        one take no part in this step) and a copy of the weights as they are."""
        weights = {name: weight.detach().clone() for name, weight in self.model.named_parameters()
                   if name in gradients}
        self._before = ({name: g.detach().clone() for name, g in gradients.items()}, weights)

    def accumulate(self) -> None:
        """After the optimizer's step: omega_i -= g_i * (w_i - w_i before the step)."""
        if self._before is None:
            return
        gradients, weights = self._before
        for name, weight in self.model.named_parameters():
            if name in gradients:
                on_device_of(self.total, name, weight).sub_(gradients[name] * (weight.detach() - weights[name]))
        self._before = None

    def reset(self) -> None:
        """Start again from zero (on each tensor's device)."""
        for integral in self.total.values():
            integral.zero_()
