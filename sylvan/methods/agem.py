"""`agem`: averaged gradient episodic memory (Chaudhry et al., "Efficient Lifelong Learning with
A-GEM", ICLR 2019).

An episodic memory keeps buffer_size / nb_tasks random samples of each finished task. At every
step, the gradient g of the minibatch's loss is compared with the gradient g_ref of the loss on
a batch drawn from the memory; when they conflict (g . g_ref < 0), g is projected so that the
step does not increase the memory's loss: g <- g - (g . g_ref / g_ref . g_ref) g_ref. Needs task
boundaries (the memory of a task is committed at its end). Defaults: the Seq-MNIST
hyperparameters of Buzzega et al. 2020 (lr 0.1, reference batch 128, batch 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F

from sylvan.buffers import ReservoirBuffer
from sylvan.errors import ConfigurationError
from sylvan.methods.supervised import Batch, SupervisedMethod
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


def project_conflicting(gradient: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """A-GEM's rule: `gradient` unchanged if it does not conflict with `reference`, otherwise
    its projection on the half-space where the two agree (flat vectors)."""
    dot = torch.dot(gradient, reference)
    if dot >= 0:
        return gradient
    return gradient - (dot / torch.dot(reference, reference).clamp_min(1e-12)) * reference


@dataclass
class AGEM(SupervisedMethod):
    """A-GEM. With data-parallel workers, the reference gradient is averaged over the workers
    like the minibatch gradient, so that every worker projects the same way."""

    name: ClassVar[str] = "agem"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.1  # learning rate
    buffer_size: int = 200  # episodic memory, in samples, shared equally among the tasks
    reference_batch_size: int = 128  # memory samples behind each reference gradient

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "buffer_size")
        self.require_at_least(1, "reference_batch_size")

    def validate_for(self, setting: Any) -> None:
        if 0 < self.buffer_size < setting.nb_tasks:
            raise ConfigurationError(
                f"agem shares --buffer_size among the {setting.nb_tasks} tasks: {self.buffer_size} samples "
                "leave none per task"
            )

    def configure(self, setting: Any) -> None:
        self.validate_for(setting)
        self.per_task = self.buffer_size // setting.nb_tasks
        super().configure(setting)
        self.memory = ReservoirBuffer(self.per_task * setting.nb_tasks, seed=setting.seed)
        self._task_samples = ReservoirBuffer(self.per_task, seed=setting.seed + 1)
        self._reference: list[torch.Tensor] | None = None

    def on_task_start(self, task_id: int | None) -> None:
        super().on_task_start(task_id)
        self._task_samples = ReservoirBuffer(self.per_task, seed=self.setting.seed + 1 + self.memory.seen)

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        if len(self._task_samples):
            self.memory.add(**self._task_samples.get_all())

    def training_step(self, batch: Batch) -> torch.Tensor:
        self._reference = None
        reference = self.memory.sample(self.reference_batch_size)
        if reference:
            parameters = [p for p in self.model.parameters() if p.requires_grad]
            reference_loss = F.cross_entropy(self.learner(self.augment_inputs(reference["x"])), reference["y"])
            self._reference = list(torch.autograd.grad(reference_loss, parameters, allow_unused=True))
        self._task_samples.add(**batch.fields())
        return F.cross_entropy(self.learner(batch.x), batch.y)

    def after_backward(self) -> None:
        if self._reference is None:
            return
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        gradient = torch.cat([_flat(p.grad, p) for p in parameters])
        reference = torch.cat([_flat(g, p) for g, p in zip(self._reference, parameters)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(reference)
            reference /= dist.get_world_size()
        projected = project_conflicting(gradient, reference)
        offset = 0
        for p in parameters:
            count = p.numel()
            if p.grad is not None:
                p.grad.copy_(projected[offset : offset + count].view_as(p))
            offset += count
        self._reference = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.memory.load_state_dict(state["memory"])


def _flat(gradient: torch.Tensor | None, parameter: torch.Tensor) -> torch.Tensor:
    return (gradient if gradient is not None else torch.zeros_like(parameter)).reshape(-1)
