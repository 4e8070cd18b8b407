"""`wa`: weight aligning (Zhao et al., "Maintaining Discrimination and Fairness in Class
Incremental Learning", CVPR 2020).

How it follows its paper, and what it adds: docs/method-notes.md, section wa."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods.core.exemplars import HerdingExemplarMethod
from sylvan.methods.core.supervised import Batch
from sylvan.methods.parts.distillation import old_share_weighted_loss
from sylvan.methods.parts.teacher import Teacher
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


def aligned_norms_factor(weight: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> float:
    """gamma: the mean L2 norm of the rows of `weight` in the boolean mask `old` over that of the
    rows in `new`; 1 where either set is empty or the new rows are all zero."""
    if not bool(old.any()) or not bool(new.any()):
        return 1.0
    norms = weight.detach().float().norm(dim=1)
    new_norm = float(norms[new.to(norms.device)].mean())
    return float(norms[old.to(norms.device)].mean()) / new_norm if new_norm > 0 else 1.0


@dataclass
class WA(HerdingExemplarMethod):
    """WA: distillation with exemplars, then the new classes' weight vectors scaled to the old
    classes' mean norm; the output layer's weights clipped to non-negative values."""

    name: ClassVar[str] = "wa"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.1  # learning rate
    temperature: float = 2.0  # softmax temperature of the distillation
    align_weights: bool = True  # scale the new classes' weight vectors at each task's end (false: KD alone)
    clip_weights: bool = True  # clip the output layer's weights to non-negative values after each step

    state_attributes: ClassVar[tuple[str, ...]] = ("gammas",)

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "temperature", strict=True)

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, self.output_layer)

    @staticmethod
    def output_layer(model: nn.Module, name: str) -> nn.Linear:
        """The linear `classifier` of `model`, whose weight vectors WA aligns; a
        `ConfigurationError` for a network without one."""
        layer = getattr(model, "classifier", None)
        if not isinstance(layer, nn.Linear):
            raise ConfigurationError(
                f"wa aligns the weight vectors of a linear output layer named `classifier`, which {name} lacks"
            )
        return layer

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.teacher = self.hold("teacher", lambda: Teacher(lambda: self.model))
        self.gammas: list[float] = []  # the factor each task's new classes were aligned by

    @property
    def classifier(self) -> nn.Linear:
        return self.model.classifier  # checked by `validate_for`

    def training_step(self, batch: Batch) -> torch.Tensor:
        active, old = self.seen_classes.observe(batch.y)
        return old_share_weighted_loss(self.learner(batch.x), batch.y, self.teacher.logits(batch.x), active, old,
                                       self.temperature, times_temperature_squared=False)

    def after_step(self) -> None:
        super().after_step()
        if self.clip_weights:
            with torch.no_grad():
                self.classifier.weight.clamp_(min=0)

    def on_task_end(self, task_id: int | None) -> None:
        new = self.seen_classes.active & ~self.seen_classes.old
        if self.align_weights and bool(self.seen_classes.old.any()) and bool(new.any()):
            self.align(self.seen_classes.old, new)
        super().on_task_end(task_id)  # the teacher (aligned) and the exemplars

    def align(self, old: torch.Tensor, new: torch.Tensor) -> float:
        """Scale the weight vectors of the classes in `new` to the mean norm of those in `old`;
        return the factor, gamma."""
        weight = self.classifier.weight
        gamma = aligned_norms_factor(weight, old, new)
        with torch.no_grad():
            weight[new.to(weight.device)] *= gamma
        self.gammas.append(gamma)
        return gamma
