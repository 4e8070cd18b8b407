"""The weight-regularization methods' part on an agent (`ewc`, `mas`, `l2` on the reinforcement-
learning branch): each of the agent's networks anchored to its weights at the last task's end,
lambda * sum_i Omega_i (w_i - w*_i)^2 added to that network's loss, Omega the importances of the
finished tasks summed (Omega <- decay * Omega + Omega_task).

At each task's end, a task's importance is measured (`sylvan.methods.parts.agent_importance`) on
`batches` x `batch_size` transitions drawn from the agent's replay memory (Continual World: 10 x
256), and the anchor moves to the current weights. Until the first task ends, it adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sylvan.methods.core.regularization import folded_importance, weighted_squared_distance

Importance = Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class AgentAnchor:
    """A part: the anchor and importances of every network of `agent`, and their penalty."""

    def __init__(self, agent: Any, strength: float, importance: Importance, batch_size: int = 256,
                 batches: int = 10, decay: float = 1.0) -> None:
        self.agent, self.strength, self.measure = agent, strength, importance
        self.batch_size, self.batches, self.decay = batch_size, batches, decay
        self.importance: dict[str, dict[str, torch.Tensor]] | None = None  # per network, per parameter
        self.anchor: dict[str, dict[str, torch.Tensor]] | None = None

    def agent_loss(self, network: str, batch: Any = None) -> torch.Tensor | None:
        """lambda * sum_i Omega_i (w_i - w*_i)^2 over the network's weights; None for a network it
        does not protect, before the first task's end, and at strength 0."""
        if self.importance is None or self.anchor is None or self.strength <= 0 or network not in self.importance:
            return None
        module = self.agent.networks()[network]
        return self.strength * weighted_squared_distance(module, self.importance[network], self.anchor[network])

    def task_importance(self) -> dict[str, dict[str, torch.Tensor]]:
        """Each network's importance, over transitions drawn from the agent's replay memory."""
        found: dict[str, dict[str, torch.Tensor]] = {}
        for name in self.agent.protected_networks():
            view = self.agent.output_distribution(name)
            parts = [self.measure(view, self.agent.sample_transitions(self.batch_size)) for _ in range(self.batches)]
            found[name] = {key: torch.stack([p[key] for p in parts]).mean(0) for key in parts[0]}
        return found

    def on_task_end(self) -> None:
        running = self.importance or {}
        self.importance = {network: folded_importance(running.get(network), values, self.decay)
                           for network, values in self.task_importance().items()}
        self.anchor = {network: {key: weight.detach().clone() for key, weight in module.named_parameters()}
                       for network, module in self.agent.protected_networks().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"importance": _copied(self.importance), "anchor": _copied(self.anchor)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.importance, self.anchor = state["importance"], state["anchor"]


def _copied(values: dict[str, dict[str, torch.Tensor]] | None) -> dict[str, dict[str, torch.Tensor]] | None:
    """Per-network tensors copied to the CPU (a checkpoint's)."""
    if values is None:
        return None
    return {network: {key: value.detach().cpu().clone() for key, value in tensors.items()}
            for network, tensors in values.items()}
