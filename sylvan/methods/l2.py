"""`l2`: a quadratic anchor to the weights at the end of the previous task, every weight equally
important: lambda * sum_i Omega (w_i - w*_i)^2 with Omega the number of tasks finished (each task
adds 1, as Continual World's L2 sums its importances). The isotropic baseline of `ewc` and `mas`
(Kirkpatrick et al. 2017 compare EWC with it): what an importance measure adds shows against it.

On a supervised setting it regularizes the classifier (`WeightRegularization`, with its bound on
the importance under SGD); on a reinforcement-learning one, each network of the agent
(`AgentAnchor`). Needs task boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from sylvan.methods.core.on_agent import AppliesToAgents
from sylvan.methods.core.regularization import WeightRegularization
from sylvan.methods.parts import agent_importance
from sylvan.methods.parts.agent_anchor import AgentAnchor
from sylvan.settings.assumptions import TaskBoundaries


@dataclass
class L2(AppliesToAgents, WeightRegularization):
    """Fine-tuning anchored to the previous task's weights by a uniform quadratic penalty."""

    name: ClassVar[str] = "l2"
    target_setting: ClassVar[type] = TaskBoundaries
    # the importance and the anchor are the base's state
    checkpoint_complete: ClassVar[bool] = True

    lr: float = 0.03  # learning rate
    l2_lambda: float = 1.0  # strength of the quadratic penalty

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "l2_lambda")

    @property
    def penalty_strength(self) -> float:
        return self.l2_lambda

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        self.consolidate({name: torch.ones_like(weight) for name, weight in self.current_weights().items()})

    def agent_part(self, agent: Any) -> AgentAnchor:
        """On an agent: each network anchored, every weight with importance 1 per finished task."""
        return AgentAnchor(agent, self.l2_lambda, agent_importance.uniform, batches=1)
