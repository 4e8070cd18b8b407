"""`ssil`: separated softmax for incremental learning (Ahn et al., "SS-IL: Separated Softmax for
Incremental Learning", ICCV 2021).

How it follows its paper, and what it adds: docs/method-notes.md, section ssil."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from sylvan.methods.core.exemplars import HerdingExemplarMethod
from sylvan.methods.core.supervised import Batch, dataset_tensors
from sylvan.methods.parts.distillation import distillation_loss
from sylvan.methods.parts.teacher import Teacher
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


def separated_cross_entropy(logits: torch.Tensor, y: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The summed cross-entropy of `logits` over the classes of the boolean mask `classes` alone."""
    return F.cross_entropy(logits.masked_fill(~classes, float("-inf")), y, reduction="sum")


@dataclass
class SSIL(HerdingExemplarMethod):
    """SS-IL: separated softmax for new samples and exemplars, task-wise distillation."""

    name: ClassVar[str] = "ssil"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.1  # learning rate
    replay_size: int = 0  # r: exemplars replayed with each minibatch (0: as many as the batch size)
    temperature: float = 2.0  # T of the task-wise distillation

    state_attributes: ClassVar[tuple[str, ...]] = ("task_groups",)

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "replay_size")
        self.require_at_least(0, "temperature", strict=True)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.teacher = self.hold("teacher", lambda: Teacher(lambda: self.model))
        self.current_classes = torch.zeros(run.num_classes, dtype=torch.bool)  # the task being trained's
        self.task_groups: list[torch.Tensor] = []  # each finished task's classes (distinct sets), as masks

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        """The task's data alone: the exemplars join each minibatch in `training_step`."""
        self._task_data = dataset_tensors(train_data.dataset)
        self.current_classes = torch.zeros_like(self.current_classes)
        self.current_classes[self._task_data[1].unique()] = True
        self.train_learner(train_data, val_data)

    def training_step(self, batch: Batch) -> torch.Tensor:
        self.seen_classes.observe(batch.y)
        device = batch.y.device
        replay = self.replay.take(self.replay_size or len(batch.y)) if len(self.replay) else {}
        x, y = batch.x, batch.y
        if replay:
            x = torch.cat([x, self.augment_inputs(replay["x"].to(device))])
            y = torch.cat([y, replay["y"].to(device)])
        logits = self.learner(x)
        new = len(batch.y)
        loss = separated_cross_entropy(logits[:new], y[:new], self.current_classes.to(device))
        if replay:
            loss = loss + separated_cross_entropy(logits[new:], y[new:], self.seen_classes.old.to(device))
        loss = loss / len(y)
        teacher = self.teacher.logits(x)
        if teacher is not None:
            for group in self.task_groups:
                group = group.to(device)
                loss = loss + distillation_loss(logits[:, group], teacher[:, group], self.temperature)
        return loss

    def on_task_end(self, task_id: int | None) -> None:
        classes = torch.zeros_like(self.current_classes)
        classes[self._task_data[1].unique()] = True
        if not any(torch.equal(classes, group) for group in self.task_groups):
            self.task_groups.append(classes)
        super().on_task_end(task_id)
