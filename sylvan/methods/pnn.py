"""`pnn`: progressive neural networks (Rusu et al., "Progressive Neural Networks", 2016), the
task-incremental row of the DER paper's tables. A new column of the backbone per task, fed by
the earlier columns' activations through lateral adapters; the task label picks the column, at
training and at test time. Earlier columns never change, so nothing is forgotten, at the price
of a network that grows with the tasks (`sylvan.models.progressive`). Needs task labels at test
time, and a backbone of Linear / Conv2d layers, residual blocks and batch norm (the MLPs, the
small CNN, the ResNets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.methods.core.supervised import Batch, SupervisedMethod
from sylvan.models.progressive import ProgressiveNetwork, column_of
from sylvan.settings.base import Setting
from sylvan.settings.task_incremental import TaskIncrementalSetting


@dataclass
class PNN(SupervisedMethod):
    """One column per task with lateral connections from the earlier columns; each sample goes
    through its task's column and competes only among its task's classes."""

    name: ClassVar[str] = "pnn"
    target_setting: ClassVar[type[Setting]] = TaskIncrementalSetting

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda backbone, _: column_of(backbone))

    def build_model(self) -> nn.Module:
        # the first task's column; each later one is a fresh backbone too, added when its task begins
        return ProgressiveNetwork(super().build_model)

    def on_task_start(self, task_id: int | None) -> None:
        """A column for each task up to this one (every task's, where they all come at once)."""
        super().on_task_start(task_id)
        self.grow_to(self.run.nb_tasks if task_id is None else task_id + 1)

    def grow_to(self, columns: int) -> None:
        while self.model.nb_columns < columns:
            self.model.grow(super().build_model())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resuming: the columns the checkpoint's network had, then their weights."""
        self.grow_to(1 + max((int(key.split(".")[2]) for key in state["model"] if key.startswith("model.columns.")),
                             default=0))
        super().load_state_dict(state)

    def training_step(self, batch: Batch) -> torch.Tensor:
        if batch.t is None:
            raise ValueError("pnn needs task labels in every training batch")
        return F.cross_entropy(self.scores(batch.x, batch.t), batch.y)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """Each sample's scores from its task's column; a task whose column is not there yet (the
        evaluation of the tasks to come) has learned nothing: all its scores are 0."""
        if task_labels is None or not len(x):
            return self.mask_to_tasks(self.model(x, task_labels), task_labels)
        labels = task_labels.to(x.device)
        ahead = labels >= self.model.nb_columns
        if not bool(ahead.any()):
            return self.mask_to_tasks(self.model(x, labels), task_labels)
        scores = x.new_zeros(len(x), self.run.num_outputs)
        if not bool(ahead.all()):
            scores[~ahead] = self.model(x[~ahead], labels[~ahead]).to(scores.dtype)
        return self.mask_to_tasks(scores, task_labels)
