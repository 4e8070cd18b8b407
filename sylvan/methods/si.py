"""`si`: synaptic intelligence (Zenke, Poole & Ganguli, "Continual Learning Through Synaptic
Intelligence", ICML 2017).

During a task, each weight accumulates its contribution to the decrease of the loss along the
training path, omega_i += -g_i * (w_i(after step) - w_i(before step)) (for plain SGD this is
lr * g_i^2, the form of the reference implementation of Buzzega et al. 2020). At the end of the
task, the importance Omega_i += omega_i / ((w_i - w*_i)^2 + xi), with w* the weights at the start
of the task, and the loss of later tasks adds c * sum_i Omega_i (w_i - w*_i)^2. As in that
implementation, gradient values are clipped to [-1, 1]. Defaults: the Seq-MNIST hyperparameters
of Buzzega et al. 2020 (lr 0.1, c 1, xi 0.9, batch 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from sylvan.methods.core.base import joined_state
from sylvan.methods.core.on_agent import AppliesToAgents
from sylvan.methods.core.regularization import WeightRegularization
from sylvan.methods.parts.agent_path_integral import AgentPathIntegral
from sylvan.methods.parts.path_integral import PathIntegral
from sylvan.settings.assumptions import TaskBoundaries


@dataclass
class SI(AppliesToAgents, WeightRegularization):
    """Synaptic intelligence. Needs task boundaries: importances are consolidated at the end
    of each task."""

    name: ClassVar[str] = "si"
    target_setting: ClassVar[type] = TaskBoundaries

    lr: float = 0.1  # learning rate
    c: float = 1.0  # strength of the surrogate-loss penalty
    xi: float = 0.9  # damping: keeps the importance finite where a weight barely moved
    clip_value: float = 1.0  # clip each gradient value to [-clip_value, clip_value] (0: no clipping)

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "c")
        self.require_at_least(0, "xi", strict=True)
        self.require_at_least(0, "clip_value")

    def agent_part(self, agent: Any) -> AgentPathIntegral:
        """On an agent: each protected network's path integral, importance and anchor."""
        return AgentPathIntegral(agent, self.c, self.xi, self.clip_value)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.anchor = self.current_weights()  # w*: the weights at the start of the current task
        self.path = PathIntegral(self.model)  # omega

    @property
    def path_integral(self) -> dict[str, torch.Tensor]:
        """omega of each parameter, by name, over the current task."""
        return self.path.total

    @property
    def penalty_strength(self) -> float:
        return self.c

    def after_backward(self) -> None:
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        if self.clip_value > 0:
            torch.nn.utils.clip_grad_value_(parameters, self.clip_value)
        self.path.record({name: p.grad for name, p in self.model.named_parameters() if p.grad is not None})

    def after_step(self) -> None:
        self.path.accumulate()

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        contributions = {}
        for name, weight in self.model.named_parameters():
            weight = weight.detach()
            moved = (weight - self.anchor[name].to(weight.device)).pow(2)
            contributions[name] = self.path_integral[name].to(weight.device) / (moved + self.xi)
        self.path.reset()
        self.consolidate(contributions)

    def state_dict(self) -> dict[str, Any]:
        return joined_state(super().state_dict(), path_integral=self.path_integral)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.path.total = state["path_integral"]
