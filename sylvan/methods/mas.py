"""`mas`: memory aware synapses (Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars, "Memory
Aware Synapses: Learning what (not) to forget", ECCV 2018).

A weight matters as much as the network's output is sensitive to it: at the end of each task,
its importance grows by Omega_i = mean over the task's training inputs of
|d ||f(x)||^2 / d w_i|, the absolute per-sample gradient of the squared L2 norm of the logits
(computed sample by sample, exactly, `sylvan.methods.parts.importance`; the labels are not used), and
the weights are anchored there: the loss of later tasks adds lambda * sum_i Omega_i (w_i - w*_i)^2.
The importances of the tasks add up, as in the paper. Needs task boundaries.

The penalty's curvature along w_i is 2 lambda Omega_i, and the importances of a network's logits
are large (up to a few hundred on Seq-MNIST once several tasks have added theirs), so plain SGD
on it diverges when lr * 2 lambda Omega_i passes 2: on Seq-MNIST at lr 0.03, lambda 0.3 already
does (the run then stops with a message, see `SupervisedMethod.check_weights_finite`). Defaults:
lr 0.03 and lambda 0.1, the largest of 0.01, 0.1, 0.3, 1 and 10 that trains there.
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
from sylvan.methods.parts.importance import output_sensitivity
from sylvan.settings.assumptions import TaskBoundaries


@dataclass
class MAS(AppliesToAgents, WeightRegularization):
    """Memory aware synapses. Needs task boundaries: importances and the anchor are updated at
    the end of each task."""

    name: ClassVar[str] = "mas"
    target_setting: ClassVar[type] = TaskBoundaries
    # the importance and the anchor are the base's state; a task's data live within its stage
    checkpoint_complete: ClassVar[bool] = True

    lr: float = 0.03  # learning rate
    mas_lambda: float = 0.1  # strength of the quadratic penalty (see the module docstring for its bound)
    importance_batch_size: int = 256  # samples whose gradients are computed together

    def agent_part(self, agent: Any) -> AgentAnchor:
        """On an agent: each network anchored with its output sensitivity
        (`agent_importance.output_sensitivity`), summed over tasks."""
        return AgentAnchor(agent, self.mas_lambda, agent_importance.output_sensitivity,
                           batch_size=self.importance_batch_size)

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "mas_lambda")
        self.require_at_least(1, "importance_batch_size")

    def configure(self, run: Any) -> None:
        super().configure(run)
        self._task_inputs: torch.Tensor | None = None

    @property
    def penalty_strength(self) -> float:
        return self.mas_lambda

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self._task_inputs = dataset_tensors(train_data.dataset)[0]
        super().fit(train_data, val_data)

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        x, self._task_inputs = self._task_inputs, None
        self.consolidate(self.output_sensitivity(x))

    def output_sensitivity(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Omega on the inputs x, in evaluation mode (no dropout, frozen batch norm)."""
        with evaluating(self.model):
            return output_sensitivity(self.model, x, self.importance_batch_size)
