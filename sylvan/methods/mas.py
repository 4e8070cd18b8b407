"""`mas`: memory aware synapses (Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars, "Memory
Aware Synapses: Learning what (not) to forget", ECCV 2018).

A weight matters as much as the network's output is sensitive to it: at the end of each task,
its importance grows by Omega_i = mean over the task's training inputs of
|d ||f(x)||^2 / d w_i|, the absolute per-sample gradient of the squared L2 norm of the logits
(computed sample by sample, exactly, `sylvan.methods.importance`; the labels are not used), and
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
import torch.nn.functional as F
from torch.utils.data import DataLoader

from sylvan.methods.importance import output_sensitivity
from sylvan.methods.regularization import weighted_squared_distance
from sylvan.methods.supervised import Batch, SupervisedMethod, dataset_tensors, evaluating
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


@dataclass
class MAS(SupervisedMethod):
    """Memory aware synapses. Needs task boundaries: importances and the anchor are updated at
    the end of each task."""

    name: ClassVar[str] = "mas"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.03  # learning rate
    mas_lambda: float = 0.1  # strength of the quadratic penalty (see the module docstring for its bound)
    importance_batch_size: int = 256  # samples whose gradients are computed together

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "mas_lambda")
        self.require_at_least(1, "importance_batch_size")

    def configure(self, setting: Any) -> None:
        super().configure(setting)
        self.importance: dict[str, torch.Tensor] | None = None
        self.anchor: dict[str, torch.Tensor] | None = None
        self._task_inputs: torch.Tensor | None = None

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self._task_inputs = dataset_tensors(train_data.dataset)[0]
        super().fit(train_data, val_data)

    def penalty(self) -> torch.Tensor:
        """sum_i Omega_i (w_i - w*_i)^2 over every parameter (0 before the first task ends)."""
        if self.importance is None or self.anchor is None:
            return torch.zeros(())
        return weighted_squared_distance(self.model, self.importance, self.anchor)

    def training_step(self, batch: Batch) -> torch.Tensor:
        loss = F.cross_entropy(self.learner(batch.x), batch.y)
        if self.importance is not None and self.mas_lambda > 0:
            loss = loss + self.mas_lambda * self.penalty()
        return loss

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        x, self._task_inputs = self._task_inputs, None
        task_importance = self.output_sensitivity(x)
        if self.importance is None:
            self.importance = task_importance
        else:
            self.importance = {k: self.importance[k].to(v.device) + v for k, v in task_importance.items()}
        self.anchor = {k: v.detach().clone() for k, v in self.model.named_parameters()}

    def output_sensitivity(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Omega on the inputs x, in evaluation mode (no dropout, frozen batch norm)."""
        with evaluating(self.model):
            return output_sensitivity(self.model, x, self.importance_batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "importance": self.importance, "anchor": self.anchor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.importance, self.anchor = state["importance"], state["anchor"]
