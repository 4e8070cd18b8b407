"""`multi_head`: a shared feature extractor with one output head per task, the head chosen by
the task label, at training and at test time (the standard task-incremental baseline, e.g. the
multi-head setting of Li & Hoiem 2017 and of Farquhar & Gal, "Towards Robust Evaluations of
Continual Learning", 2018). Needs task labels at test time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods.core.supervised import Batch, SupervisedMethod
from sylvan.settings.base import Setting
from sylvan.settings.task_incremental import TaskIncrementalSetting


class MultiHeadNetwork(nn.Module):
    """A backbone's `features`, then one linear head per task; each sample goes through the
    head of its task label."""

    def __init__(self, backbone: nn.Module, nb_tasks: int, num_classes: int) -> None:
        super().__init__()
        if not hasattr(backbone, "features") or not hasattr(backbone, "feature_dim"):
            raise ConfigurationError("multi_head needs a backbone with `features` and `feature_dim`")
        self.features = backbone.features
        heads = [nn.Linear(backbone.feature_dim, num_classes) for _ in range(nb_tasks)]
        self.weight = nn.Parameter(torch.stack([h.weight.detach() for h in heads]))  # (tasks, classes, dim)
        self.bias = nn.Parameter(torch.stack([h.bias.detach() for h in heads]))  # (tasks, classes)

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        if task_labels is None:
            raise ValueError("a multi-head network needs the task label of every sample")
        features = self.features(x).flatten(1)
        task_labels = task_labels.to(features.device)
        return torch.einsum("bd,bcd->bc", features, self.weight[task_labels]) + self.bias[task_labels]


@dataclass
class MultiHead(SupervisedMethod):
    """One head per task over a shared trunk; each head only competes among its task's classes."""

    name: ClassVar[str] = "multi_head"
    target_setting: ClassVar[type[Setting]] = TaskIncrementalSetting

    def build_model(self) -> nn.Module:
        return MultiHeadNetwork(super().build_model(), self.run.nb_tasks, self.run.num_classes)

    def training_step(self, batch: Batch) -> torch.Tensor:
        if batch.t is None:
            raise ValueError("multi_head needs task labels in every training batch")
        logits = self.mask_to_tasks(self.model(batch.x, batch.t), batch.t)
        return F.cross_entropy(logits, batch.y)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        return self.mask_to_tasks(self.model(x, task_labels), task_labels)
