"""SI's part on an agent (Zenke, Poole & Ganguli, ICML 2017): the anchor of `AgentAnchor`, each
weight's importance its share of the decrease of the agent's loss along the task's training path.

At each gradient step of a protected network, omega_i -= g_i (w_i after - w_i before), g its
gradient clipped to [-clip_value, clip_value] (`PathIntegral`); at the task's end the importance
grows by omega_i / ((w_i - w_i at the task's start)^2 + xi), and the path starts again.
"""

from __future__ import annotations

from typing import Any

import torch

from sylvan.methods.parts.agent_anchor import AgentAnchor, _copied
from sylvan.methods.parts.path_integral import PathIntegral


class AgentPathIntegral(AgentAnchor):
    """A part: SI's path integrals, importances and anchor of the agent's protected networks."""

    def __init__(self, agent: Any, strength: float, xi: float, clip_value: float) -> None:
        super().__init__(agent, strength, importance=None)  # type: ignore[arg-type]
        self.xi, self.clip_value = xi, clip_value
        self.paths = {network: PathIntegral(module) for network, module in agent.protected_networks().items()}
        self.start = self.weights()

    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        return {network: {name: w.detach().clone() for name, w in module.named_parameters()}
                for network, module in self.agent.protected_networks().items()}

    def agent_gradients(self, network: str) -> None:
        if network not in self.paths:
            return
        gradients = {name: (p.grad.clamp(-self.clip_value, self.clip_value) if self.clip_value > 0 else p.grad)
                     for name, p in self.agent.networks()[network].named_parameters() if p.grad is not None}
        self.paths[network].record(gradients)

    def agent_stepped(self, network: str) -> None:
        if network in self.paths:
            self.paths[network].accumulate()

    def task_importance(self) -> dict[str, dict[str, torch.Tensor]]:
        found = {}
        for network, module in self.agent.protected_networks().items():
            path, start = self.paths[network], self.start[network]
            found[network] = {
                name: (path.total[name] / ((w.detach() - start[name].to(w.device)).pow(2) + self.xi)).cpu()
                for name, w in module.named_parameters()}
            path.reset()
        self.start = self.weights()
        return found

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "start": _copied(self.start),
                "paths": _copied({network: path.total for network, path in self.paths.items()})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.start = state["start"]
        for network, total in state["paths"].items():
            for name, value in total.items():
                self.paths[network].total[name].copy_(value)
