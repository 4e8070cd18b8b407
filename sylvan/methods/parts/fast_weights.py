"""Fast weights: a network's weights after a few steps of gradient descent on one batch, computed
as values (`torch.func.functional_call`, `torch.func.grad`) from the network's own weights, the
slow weights, which stay as they are. A loss of the fast weights differentiates back to the slow
weights and to the step sizes, through the inner steps (MAML: Finn et al., ICML 2017) or, first
order, around them; the step sizes may be learned, one per weight tensor (as OSAKA's code learns
them: Li et al., "Meta-SGD", 2017, per tensor rather than per weight).

`adapted` names the weights the inner steps move (ANIL: the classifier's alone); the others
keep their slow values in the fast weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

Weights = dict[str, torch.Tensor]


def support_and_query(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A task's samples split in two: the first half of each class's samples (in the order they
    come) to adapt on, the support, and the rest to evaluate the adaptation on, the query."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(labels)
    rank[order] = torch.arange(len(labels), device=labels.device) - starts[labels[order]]
    support = rank < counts[labels] // 2
    return support.nonzero().squeeze(1), (~support).nonzero().squeeze(1)


class FastWeights:
    """The inner loop over `network`'s weights: `steps` steps of size `step_size` (a learned
    tensor per adapted weight where `learn_step_size`) on the weights `adapted(name)` selects."""

    def __init__(self, network: nn.Module, step_size: float, steps: int, learn_step_size: bool = False,
                 adapted: Callable[[str], bool] = lambda name: True) -> None:
        self.network, self.steps = network, steps
        self.adapted = [name for name, _ in network.named_parameters() if adapted(name)]
        device = next(network.parameters()).device
        self.step_sizes = torch.full((len(self.adapted),), float(step_size), device=device)
        if learn_step_size:
            self.step_sizes = nn.Parameter(self.step_sizes)

    def state_dict(self) -> dict[str, Any]:
        return {"step_sizes": self.step_sizes.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.step_sizes.copy_(state["step_sizes"])

    def on_task_end(self) -> None:
        """Nothing: the step sizes change by meta-updates only."""

    def slow(self, detached: bool = False) -> Weights:
        """The network's own weights, by name (cut from the graph: `detached`)."""
        return {name: p.detach() if detached else p for name, p in self.network.named_parameters()}

    def logits(self, weights: Weights, x: torch.Tensor) -> torch.Tensor:
        """The network's outputs for `x` under `weights` (its buffers as they are)."""
        return functional_call(self.network, {**dict(self.network.named_buffers()), **weights}, (x,))

    def loss(self, weights: Weights, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(weights, x), y)

    def adapt(self, weights: Weights, x: torch.Tensor, y: torch.Tensor, second_order: bool = False) -> Weights:
        """`weights` after the inner steps on (x, y). `second_order`: the result keeps the graph
        through the steps' gradients (a loss of it differentiates through them to `weights` and
        the step sizes); else the gradients are taken as constants (first-order MAML), and the
        result differentiates to `weights` and the step sizes alone."""
        for _ in range(self.steps):
            moving = {name: weights[name] for name in self.adapted}

            def inner_loss(moved: Weights, held: Weights) -> torch.Tensor:
                return self.loss({**held, **moved}, x, y)

            gradients = grad(inner_loss)(moving, weights)
            stepped = {name: moving[name] - size * (gradients[name] if second_order else gradients[name].detach())
                       for name, size in zip(self.adapted, self.step_sizes)}
            weights = {**weights, **stepped}
        return weights

    def meta_loss(self, support: tuple[torch.Tensor, torch.Tensor], query: tuple[torch.Tensor, torch.Tensor],
                  second_order: bool) -> torch.Tensor:
        """The loss on `query` of the slow weights adapted on `support`: what MAML's outer step
        lowers."""
        return self.loss(self.adapt(self.slow(), *support, second_order=second_order), *query)

    def meta_parameters(self) -> list[Any]:
        """What a meta-update moves: the slow weights, and the step sizes where learned."""
        learned = [self.step_sizes] if isinstance(self.step_sizes, nn.Parameter) else []
        return [*self.network.parameters(), *learned]
