"""`ogd`: orthogonal gradient descent (Farajtabar, Azizan, Mott & Li, "Orthogonal Gradient Descent
for Continual Learning", AISTATS 2020).

How it follows its paper, and what it adds: docs/method-notes.md, section ogd."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader, Dataset

from sylvan.errors import ConfigurationError
from sylvan.methods.core.episodic_memory import flat_gradient, trainable_parameters, write_flat_gradient
from sylvan.methods.core.supervised import SupervisedMethod, evaluating
from sylvan.methods.parts.gradient_projection import (
    LOGIT_GRADIENTS,
    grown_basis,
    logit_gradients,
)
from sylvan.methods.parts.held_weights import batch_norm_statistics_held
from sylvan.minibatches import dataset_rows
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting

SAMPLE_SEED = 50_021  # offset of the run's seed for the samples each task's gradients come from
BYTES_PER_VALUE = 4  # the basis is float32


@dataclass
class OGD(SupervisedMethod):
    """Orthogonal gradient descent: each task's gradients projected out of the span of the
    earlier tasks' output gradients."""

    name: ClassVar[str] = "ogd"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.01  # learning rate
    memory_per_task: int = 200  # samples of each task whose output gradients join the basis (the paper's 200)
    # which outputs' gradients are kept: ground_truth (the logit of the sample's label, OGD-GTL), all (every
    # logit, OGD-ALL: a row per class) or average (the mean of the logits, OGD-AVE)
    logit_gradients: str = "ground_truth"
    # the largest basis the run may keep, in GiB (parameters x vectors x 4 bytes), checked before it starts
    basis_memory_gib: float = 4.0

    state_attributes: ClassVar[tuple[str, ...]] = ("basis", "tasks_done")

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "memory_per_task")
        self.require_at_least(0, "basis_memory_gib", strict=True)
        if self.logit_gradients not in LOGIT_GRADIENTS:
            raise ConfigurationError(
                f"--logit_gradients must be one of {', '.join(LOGIT_GRADIENTS)}, got {self.logit_gradients!r}"
            )
        self.require_plain_sgd("the weights along the directions ogd protects")

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        backbone = self.backbone_layout(setting)
        if backbone is None:
            return
        parameters = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
        rows = min(parameters, self.largest_basis_rows(setting))
        needed = parameters * rows * BYTES_PER_VALUE / 2**30
        if needed > self.basis_memory_gib:
            raise ConfigurationError(
                f"ogd's basis would grow to {rows:,} vectors of {parameters:,} weights ({needed:.1f} GiB) on "
                f"{setting.name} with backbone {self.backbone_name(setting)}, above --basis_memory_gib "
                f"{self.basis_memory_gib:g}: lower --memory_per_task, or raise --basis_memory_gib where the memory "
                "is there"
            )

    def largest_basis_rows(self, setting: Any) -> int:
        """The vectors the basis gathers over the run at most (before any proves redundant): its
        samples' per task, one per class for `all`, for every task but the last."""
        per_sample = setting.num_classes if self.logit_gradients == "all" else 1
        return self.memory_per_task * per_sample * max(setting.nb_tasks - 1, 0)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.basis: torch.Tensor | None = None  # orthonormal rows over the trainable weights, flattened
        self.tasks_done = 0
        self._task_data: Dataset | None = None

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self._task_data = train_data.dataset
        if self.tasks_done == 0:
            super().fit(train_data, val_data)
            return
        with batch_norm_statistics_held(self.model):
            super().fit(train_data, val_data)

    def after_backward(self) -> None:
        """Replace the gradient over every trainable weight by its part orthogonal to the basis."""
        super().after_backward()
        if self.basis is None:
            return
        parameters = trainable_parameters(self.model)
        gradient = flat_gradient([p.grad for p in parameters], parameters)
        if self.basis.device != gradient.device:
            self.basis = self.basis.to(gradient.device)
        basis = self.basis.to(gradient.dtype)
        write_flat_gradient(parameters, gradient - (basis @ gradient) @ basis)

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        dataset, self._task_data = self._task_data, None
        if dataset is not None and self.tasks_done < self.run.nb_tasks - 1:  # the last task protects nothing
            x, y = self.task_samples(dataset)
            device = next(self.model.parameters()).device
            with evaluating(self.model) as model:
                vectors = logit_gradients(model, x.to(device), y.to(device), self.logit_gradients)
            basis = None if self.basis is None else self.basis.to(device)
            self.basis = grown_basis(basis, vectors)
        self.tasks_done += 1

    def task_samples(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """`memory_per_task` samples of the task's data, drawn with the run's seed (so that every
        data-parallel worker, which holds the whole task when it ends, draws the same)."""
        generator = torch.Generator().manual_seed(self.run.seed * 1000 + SAMPLE_SEED + self.tasks_done)
        chosen = torch.randperm(len(dataset), generator=generator)[: self.memory_per_task]
        x, y = dataset_rows(dataset, chosen.tolist())[:2]
        return x, y
