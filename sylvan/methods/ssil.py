"""`ssil`: separated softmax for incremental learning (Ahn et al., "SS-IL: Separated Softmax for
Incremental Learning", ICCV 2021).

Trained on a new task and a few exemplars of the old ones, a network comes to favour the new
classes: every new sample's cross-entropy lowers the old classes' scores, and new samples far
outnumber the exemplars (the bias that `bic` and `lucir` correct afterwards). SS-IL keeps the two
groups apart. Each minibatch of b new samples is joined by r exemplars drawn from the memory,
which holds the earlier tasks' classes only; the new samples' cross-entropy is over the current
task's classes, the exemplars' over the earlier tasks' classes (separated softmax; both summed,
divided by b + r), so neither group's loss moves the other's scores. Task-wise knowledge
distillation keeps what the earlier tasks' scores say as the previous network gave them: for
each earlier task, KL(softmax(teacher / T) || softmax(network / T)) over that task's classes
alone, times T^2, averaged over every sample of the step and summed over the tasks. Predictions
are over every class, without correction.

The exemplars are chosen by herding at each task's end from all of its data (the memory `icarl`,
`bic` and `lucir` keep, shared equally among the classes seen). Tasks whose classes are those of
an earlier task (domain-incremental settings) add no second distillation term for them.
Defaults: lr 0.1, T 2, r = b. Needs task boundaries.
"""

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

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "replay_size")
        self.require_at_least(0, "temperature", strict=True)

    def configure(self, setting: Any) -> None:
        super().configure(setting)
        self.teacher = self.hold("teacher", lambda: Teacher(lambda: self.model))
        self.current_classes = torch.zeros(setting.num_classes, dtype=torch.bool)  # the task being trained's
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
        replay = self.buffer.sample(self.replay_size or len(batch.y)) if len(self.buffer) else {}
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

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "task_groups": [group.clone() for group in self.task_groups]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.task_groups = [group.clone() for group in state["task_groups"]]
