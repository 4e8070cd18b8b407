"""`eeil`: end-to-end incremental learning (Castro, Marín-Jiménez, Guil, Schmid & Alahari,
"End-to-End Incremental Learning", ECCV 2018). Written from the paper and FACIL's implementation
(mmasana/FACIL, `src/approach/eeil.py`).

How it follows its paper, and what it adds: docs/method-notes.md, section eeil."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from sylvan.methods.core.exemplars import HerdingExemplarMethod, pick_per_class
from sylvan.methods.core.supervised import Batch, dataset_tensors
from sylvan.methods.parts.distillation import distillation_loss, frozen_copy
from sylvan.methods.parts.teacher import Teacher
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting

BALANCED_SEED = 800  # offset of the run's seed for the new classes' samples of the balanced finetuning
UNGROUPED = -1  # the group of a class no finished task has brought


@dataclass
class EEIL(HerdingExemplarMethod):
    """End-to-end incremental learning: cross-entropy and cross-distillation on the task's data
    and herding exemplars, then a balanced finetuning."""

    name: ClassVar[str] = "eeil"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.1  # learning rate (the paper's)
    temperature: float = 2.0  # T: softmax temperature of the distillation (the paper's)
    finetune_epochs: int = 30  # epochs of balanced finetuning after each task but the first (0: none)
    finetune_lr: float = 0.01  # learning rate of the balanced finetuning (the paper's)

    state_attributes: ClassVar[tuple[str, ...]] = ("class_group", "finished_tasks")

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "temperature", "finetune_lr", strict=True)
        self.require_at_least(0, "finetune_epochs")

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.teacher = self.hold("teacher", lambda: Teacher(lambda: self.model))
        # class_group[c]: the finished task that brought class c first (UNGROUPED: none yet)
        self.class_group = torch.full((run.num_classes,), UNGROUPED, dtype=torch.long)
        self.finished_tasks = 0
        self._stage_teacher: torch.nn.Module | None = None  # the network after stage 1, while finetuning

    @property
    def current_lr(self) -> float:
        return self.finetune_lr if getattr(self, "_stage_teacher", None) is not None else self.lr

    # ----- training ------------------------------------------------------------------------------

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self._task_data = dataset_tensors(train_data.dataset)
        self.train_learner(self.with_exemplars(self._task_data, train_data.batch_size), val_data)
        if self.teacher.network is not None and self.finetune_epochs and len(self.replay):
            self.finetune_balanced(train_data.batch_size)

    def balanced_samples(self) -> tuple[torch.Tensor, ...]:
        """The task's samples the balanced finetuning adds to the exemplars: of each new class
        (none of a finished task), as many as the memory holds of each old class."""
        y = self._task_data[1].cpu()
        per_class = len(self.replay) // max(int(self.seen_classes.old.sum()), 1)
        generator = torch.Generator().manual_seed(self.run.seed * 1000 + BALANCED_SEED + self.replay.seen)
        chosen = pick_per_class(y, per_class, generator) & ~self.seen_classes.old[y]
        return tuple(column[chosen.to(column.device)] for column in self._task_data)

    def finetune_balanced(self, batch_size: int) -> None:
        """Stage 2: the exemplars and `balanced_samples`, at `finetune_lr`, the new classes also
        distilled from the network as stage 1 left it."""
        self._stage_teacher = frozen_copy(self.model)
        try:
            loader = self.with_exemplars(self.balanced_samples(), batch_size)
            self.train_learner(loader, epochs=self.finetune_epochs, measure_online=False)
        finally:
            self._stage_teacher = None

    def training_step(self, batch: Batch) -> torch.Tensor:
        active, old = self.seen_classes.observe(batch.y)
        logits = self.learner(batch.x)
        loss = F.cross_entropy(logits.masked_fill(~active, float("-inf")), batch.y)
        teacher = self.teacher.logits(batch.x)
        if teacher is not None:
            groups = self.class_group.to(logits.device)
            for group in range(self.finished_tasks):
                loss = loss + self.group_distillation(logits, teacher, groups == group)
        if self._stage_teacher is not None:
            self._stage_teacher.to(batch.x.device)
            with torch.no_grad():
                stage_teacher = self._stage_teacher(batch.x)
            loss = loss + self.group_distillation(logits, stage_teacher, active & ~old)
        return loss

    def group_distillation(self, logits: torch.Tensor, teacher: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """The distillation of `teacher` on the classes of `group` (a boolean mask) alone; zero
        for a group of fewer than two classes, whose softmax is constant."""
        if int(group.sum()) < 2:
            return logits.new_zeros(())
        return distillation_loss(logits[:, group], teacher[:, group], self.temperature) / self.temperature**2

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """The network's scores over the classes seen so far: the paper's network has an output
        layer per task seen, so a class to come takes no probability mass."""
        return self.mask_to_tasks(self.seen_classes.only_seen(self.learner(x)), task_labels)

    def on_task_end(self, task_id: int | None) -> None:
        new = self.seen_classes.active & ~self.seen_classes.old  # a class is old once it has a group
        self.class_group[new] = self.finished_tasks
        self.finished_tasks += 1
        super().on_task_end(task_id)  # the teacher, the old classes, the exemplars
