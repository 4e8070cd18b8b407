"""`lwf`: Learning without Forgetting (Li & Hoiem, "Learning without Forgetting", ECCV 2016 /
TPAMI 2017), in its multi-class form as in iCaRL (Rebuffi et al. 2017): one head over every
class seen so far. Defaults: the Seq-MNIST hyperparameters of Buzzega et al. 2020 (Mammoth's
best arguments: lr 0.03, alpha 1, temperature 2, weight decay 5e-4, batch 10)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from sylvan.methods.core.supervised import Batch, SupervisedMethod
from sylvan.methods.parts.distillation import distillation_loss
from sylvan.methods.parts.seen_classes import SeenClasses
from sylvan.methods.parts.teacher import Teacher
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


@dataclass
class LwF(SupervisedMethod):
    """Cross-entropy over the classes seen so far, plus `alpha` times the distillation of the
    previous task's model on the old classes' logits (at temperature `temperature`), on the
    new task's inputs: no sample of an old task is kept. Needs task boundaries (the teacher is
    frozen at the end of each task)."""

    name: ClassVar[str] = "lwf"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.03  # learning rate
    weight_decay: float = 0.0005  # L2 penalty
    alpha: float = 1.0  # weight of the distillation loss
    temperature: float = 2.0  # softmax temperature of the distillation

    checkpoint_complete = True  # its seen classes and teacher are parts, whose state its checkpoints hold

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "alpha")
        self.require_at_least(0, "temperature", strict=True)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.seen_classes = self.hold("seen_classes", lambda: SeenClasses(self.run.num_classes))
        self.teacher = self.hold("teacher", lambda: Teacher(lambda: self.model))

    def training_step(self, batch: Batch) -> torch.Tensor:
        active, old = self.seen_classes.observe(batch.y)
        logits = self.learner(batch.x)
        loss = F.cross_entropy(logits.masked_fill(~active, float("-inf")), batch.y)
        teacher = self.teacher.logits(batch.x)
        if teacher is not None and self.alpha > 0 and bool(old.any()):
            loss = loss + self.alpha * distillation_loss(logits[:, old], teacher[:, old], self.temperature)
        return loss
