"""`ewc`: online elastic weight consolidation (Kirkpatrick et al., "Overcoming catastrophic
forgetting in neural networks", PNAS 2017; the online form of Schwarz et al., "Progress &
Compress", ICML 2018).

At the end of each task, the diagonal of the Fisher information of the model is estimated on the
task's training data and folded into a running estimate, F <- gamma * F + F_task; the weights are
anchored there: the loss of later tasks adds lambda * sum_i F_i (w_i - w*_i)^2. The Fisher is the
expected squared gradient of the log-likelihood of each sample's label, weighted by the
probability the model gives that label (as in the reference implementation of Buzzega et al.
2020), computed in batches (`sylvan.methods.parts.importance`). Defaults: the Seq-MNIST
hyperparameters of Buzzega et al. 2020 (lr 0.03, lambda 90, gamma 1, batch 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader

from sylvan.methods.core.on_agent import AppliesToAgents
from sylvan.methods.core.regularization import WeightRegularization
from sylvan.methods.core.supervised import dataset_tensors, evaluating
from sylvan.methods.parts import agent_importance
from sylvan.methods.parts.agent_anchor import AgentAnchor
from sylvan.methods.parts.importance import diagonal_fisher
from sylvan.settings.assumptions import TaskBoundaries


@dataclass
class EWC(AppliesToAgents, WeightRegularization):
    """Online EWC. Needs task boundaries: the Fisher information and the anchor are updated at
    the end of each task."""

    name: ClassVar[str] = "ewc"
    target_setting: ClassVar[type] = TaskBoundaries
    # the importance and the anchor are the base's state; a task's data live within its stage
    checkpoint_complete: ClassVar[bool] = True

    lr: float = 0.03  # learning rate
    ewc_lambda: float = 90.0  # strength of the quadratic penalty
    gamma: float = 1.0  # decay of the previous tasks' Fisher information (1: sum over tasks)
    fisher_batch_size: int = 256  # samples whose gradients are computed together

    def agent_part(self, agent: Any) -> AgentAnchor:
        """On an agent: each network anchored with its Fisher information (`agent_importance.fisher`),
        summed over tasks with the decay --gamma (`--ewc_gamma` beside an agent)."""
        return AgentAnchor(agent, self.ewc_lambda, agent_importance.fisher, batch_size=self.fisher_batch_size,
                           decay=self.gamma)

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "ewc_lambda")
        self.require_in(0, 1, "gamma")
        self.require_at_least(1, "fisher_batch_size")

    def configure(self, run: Any) -> None:
        super().configure(run)
        self._task_data: tuple[torch.Tensor, ...] = ()

    @property
    def penalty_strength(self) -> float:
        return self.ewc_lambda

    @property
    def fisher(self) -> dict[str, torch.Tensor] | None:
        """The running Fisher information: the importance, under EWC's name."""
        return self.importance

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self._task_data = dataset_tensors(train_data.dataset)
        super().fit(train_data, val_data)

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        x, y = self._task_data[0], self._task_data[1]
        self._task_data = ()
        self.consolidate(self.fisher_information(x, y), decay=self.gamma)

    def fisher_information(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Diagonal Fisher: mean over samples of p(y|x) * (d log p(y|x) / dw)^2, per parameter,
        in evaluation mode (no dropout, frozen batch norm)."""
        with evaluating(self.model):
            return diagonal_fisher(self.model, x, y, self.fisher_batch_size)
