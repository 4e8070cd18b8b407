"""`bic`: bias correction (Wu et al., "Large Scale Incremental Learning", CVPR 2019).

How it follows its paper, and what it adds: docs/method-notes.md, section bic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from sylvan.errors import ConfigurationError
from sylvan.methods.core.base import joined_state
from sylvan.methods.core.exemplars import HerdingExemplarMethod, pick_per_class
from sylvan.methods.core.supervised import Batch, dataset_tensors
from sylvan.methods.parts.bias_correction import BiasCorrection
from sylvan.methods.parts.distillation import old_share_weighted_loss
from sylvan.methods.parts.teacher import Teacher
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting

VALIDATION_SEED = 600  # offset of the run's seed for the choice of the validation samples
BIAS_ORDER_SEED = 700  # ... and for the order the bias correction is trained in


@dataclass
class BiC(HerdingExemplarMethod):
    """BiC: distillation with exemplars, then a bias correction of the new classes' logits learned
    on a balanced validation part of the exemplars and the new data."""

    name: ClassVar[str] = "bic"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.1  # learning rate
    temperature: float = 2.0  # softmax temperature of the distillation
    val_fraction: float = 0.1  # share of each class's exemplar quota that learns the bias correction
    bias_epochs: int = 250  # epochs over the validation part to learn the bias correction
    bias_lr: float = 0.001  # learning rate of the bias correction (Adam)
    bias_batch_size: int = 100  # validation samples per step of the bias correction

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "temperature", "bias_lr", strict=True)
        self.require_at_least(1, "bias_epochs", "bias_batch_size")
        self.require_in(0, 1, "val_fraction", low_open=True, high_open=True)

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        if self.validation_per_class(setting.num_classes) < 1:
            raise ConfigurationError(
                f"bic learns its bias correction on --val_fraction {self.val_fraction:g} of each class's exemplars: "
                f"--buffer_size {self.buffer_size} over the {setting.num_classes} classes of {setting.dataset} leaves "
                "none; a larger --buffer_size or --val_fraction leaves one or more"
            )

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.teacher = self.hold("teacher", lambda: Teacher(lambda: self.model))
        self.correction: BiasCorrection | None = None  # learned at the end of the last task
        self._validation: tuple[torch.Tensor, torch.Tensor] | None = None  # this task's validation part

    def validation_per_class(self, classes_seen: int) -> int:
        """Validation samples of each class once `classes_seen` classes share the memory."""
        return int(self.val_fraction * (self.buffer_size // classes_seen))

    # ----- stage 1: the network, on the task's data and the exemplars less the validation part ----

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self._task_data = dataset_tensors(train_data.dataset)
        x, y = self._task_data[0], self._task_data[1]
        stored = {name: value.cpu() for name, value in self.replay.stored().items()} if len(self.replay) else {}
        new_held, old_held = self.validation_masks(y, stored.get("y"))
        self._validation = None
        if bool(new_held.any()):
            self._validation = (torch.cat([x[new_held], stored["x"][old_held]]),
                                torch.cat([y[new_held], stored["y"][old_held]]))
        training = tuple(column[~new_held] for column in self._task_data)
        exemplars = {name: value[~old_held] for name, value in stored.items()} if stored else None
        self.train_learner(self.with_exemplars(training, train_data.batch_size, exemplars), val_data)

    def validation_masks(self, y: torch.Tensor, stored_y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Which of the task's samples (labels `y`) and of the stored exemplars (`stored_y`) form
        this task's validation part: `validation_per_class` of each class, drawn with the run's
        seed; none in the first task, which has no old classes to correct towards."""
        classes_seen = int((self.seen_classes.active | self.class_mask(y)).sum())
        count = self.validation_per_class(classes_seen) if bool(self.seen_classes.old.any()) else 0
        generator = torch.Generator().manual_seed(self.run.seed * 1000 + VALIDATION_SEED + self.replay.seen)
        new_held = pick_per_class(y, count, generator)
        if stored_y is None:
            return new_held, torch.zeros(0, dtype=torch.bool)
        return new_held, pick_per_class(stored_y, count, generator)

    def class_mask(self, y: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(self.run.num_classes, dtype=torch.bool)
        mask[y.cpu()] = True
        return mask

    def training_step(self, batch: Batch) -> torch.Tensor:
        active, old = self.seen_classes.observe(batch.y)
        logits = self.learner(batch.x)
        teacher = self.teacher.logits(batch.x)
        if teacher is not None and self.correction is not None:
            teacher = self.correction(teacher)
        return old_share_weighted_loss(logits, batch.y, teacher, active, old, self.temperature)

    # ----- stage 2: the bias correction of the new classes' logits ----------------------------

    def on_task_end(self, task_id: int | None) -> None:
        validation, self._validation = self._validation, None
        new_classes = self.seen_classes.active & ~self.seen_classes.old
        self.correction = None if validation is None else self.learn_correction(*validation, new_classes)
        super().on_task_end(task_id)  # the teacher (corrected by `correction` in the next task) and exemplars

    def learn_correction(self, x: torch.Tensor, y: torch.Tensor, new_classes: torch.Tensor) -> BiasCorrection:
        """alpha and beta for `new_classes`, by Adam on the cross-entropy over the classes seen of
        the corrected logits of the validation samples `x`, `y` under the frozen network."""
        logits = self.evaluated_in_chunks(x, lambda model, chunk: model(chunk).float())
        device = logits.device
        y, new, seen = y.to(device), new_classes.to(device), self.seen_classes.active.to(device)
        parameters = torch.tensor([1.0, 0.0], device=device, requires_grad=True)  # alpha, beta
        optimizer = torch.optim.Adam([parameters], lr=self.bias_lr)
        generator = torch.Generator().manual_seed(self.run.seed * 1000 + BIAS_ORDER_SEED + self.replay.seen)
        with torch.enable_grad():
            for _ in range(self.bias_epochs):
                for batch in torch.randperm(len(y), generator=generator).to(device).split(self.bias_batch_size):
                    chunk = logits[batch]
                    corrected = torch.where(new, parameters[0] * chunk + parameters[1], chunk)
                    # classes not seen yet are masked after the correction: a -inf logit there would
                    # make its (unused) gradient with respect to alpha NaN
                    loss = F.cross_entropy(corrected.masked_fill(~seen, float("-inf")), y[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        alpha, beta = parameters.tolist()
        return BiasCorrection(alpha, beta, new_classes.clone())

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        logits = self.learner(x)
        if self.correction is not None:
            logits = self.correction(logits)
        return self.mask_to_tasks(logits, task_labels)

    def state_dict(self) -> dict[str, Any]:
        return joined_state(super().state_dict(), correction=self.correction and vars(self.correction).copy())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.correction = None if state["correction"] is None else BiasCorrection(**state["correction"])
