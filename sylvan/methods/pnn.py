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
        # one fresh backbone per column, each initialized as the backbone initializes itself
        return ProgressiveNetwork(super().build_model, self.run.nb_tasks)

    def training_step(self, batch: Batch) -> torch.Tensor:
        if batch.t is None:
            raise ValueError("pnn needs task labels in every training batch")
        return F.cross_entropy(self.scores(batch.x, batch.t), batch.y)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        return self.mask_to_tasks(self.model(x, task_labels), task_labels)
