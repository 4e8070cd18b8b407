"""The episodic memory of the gradient-episodic-memory family (`gem`, `agem`), the step they
share (gradients on the memory, then the minibatch's gradient projected against them), and the
handling of flat gradients.

The memory keeps an equal share of a fixed budget for each finished task: buffer_size / nb_tasks
samples drawn uniformly (a reservoir) from the task's stream while it trains, committed to the
memory when the task ends, as the reference code of the DER paper fills it. Each stored sample
keeps its task label (`t`, which every setting these methods apply to gives at training time), so
that a method can take the memory task by task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from sylvan.buffers import ReservoirBuffer
from sylvan.buffers.channel import LocalReplay
from sylvan.errors import ConfigurationError
from sylvan.methods.core.supervised import Batch, SupervisedMethod


def require_share_per_task(method: str, buffer_size: int, nb_tasks: int) -> None:
    """Raise `ConfigurationError` where a memory of `buffer_size` samples, shared equally among
    `nb_tasks` tasks, leaves some task none (a memory of size 0, switched off, passes)."""
    if 0 < buffer_size < nb_tasks:
        raise ConfigurationError(
            f"{method} shares --buffer_size among the {nb_tasks} tasks: {buffer_size} samples leave none for some "
            "of them"
        )


@dataclass
class EpisodicMemoryMethod(SupervisedMethod):
    """A method with an episodic memory (`remember(batch)` during a task, committed at its end)
    whose update must not conflict with gradients on that memory. Each step computes them
    (`memory_gradients`) before the minibatch's loss; once the minibatch's gradient exists, they
    are averaged over the data-parallel workers like it, so that every worker changes it the same
    way (`project`). The memory (`self.memory`, saved with the method's state) is this worker's
    own, reached through its replay channel (`self.replay`) as any method's."""

    buffer_size: int = 200  # episodic memory, in samples, shared equally among the tasks

    state_attributes: ClassVar[tuple[str, ...]] = ("memory",)

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "buffer_size")

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        require_share_per_task(self.name, self.buffer_size, setting.nb_tasks)

    def configure(self, run: Any) -> None:
        self.validate_for(run)
        self.per_task = self.buffer_size // run.nb_tasks
        super().configure(run)
        self.memory = ReservoirBuffer(
            self.per_task * run.nb_tasks, seed=self.run.workers.seed(), pixel_fields=self.pixel_fields
        )
        self.replay = LocalReplay(self.memory)
        self._task_samples = self._task_reservoir(seed_offset=1)
        self._memory_gradients: torch.Tensor | None = None

    def remember(self, batch: Batch) -> None:
        """Offer the minibatch's samples (as they came, not augmented) to the current task's share."""
        self._task_samples.insert(self.stored_fields(batch))

    def memory_gradients(self) -> torch.Tensor | None:
        """The flat gradient(s) on the memory that this step's update must not conflict with, or
        None (no constraint: the memory is empty)."""
        raise NotImplementedError

    def project(self, gradient: torch.Tensor, memory_gradients: torch.Tensor) -> torch.Tensor:
        """The update that replaces the minibatch's flat `gradient` (itself where nothing conflicts)."""
        raise NotImplementedError

    def training_step(self, batch: Batch) -> torch.Tensor:
        self._memory_gradients = self.memory_gradients()
        self.remember(batch)
        return F.cross_entropy(self.learner(batch.x), batch.y)

    def after_backward(self) -> None:
        if self._memory_gradients is None:
            return
        parameters = trainable_parameters(self.model)
        gradient = flat_gradient([p.grad for p in parameters], parameters)
        memory_gradients = self.run.workers.mean(self._memory_gradients)
        write_flat_gradient(parameters, self.project(gradient, memory_gradients))
        self._memory_gradients = None

    def on_task_start(self, task_id: int | None) -> None:
        super().on_task_start(task_id)
        self._task_samples = self._task_reservoir(seed_offset=1 + self.replay.seen)

    def _task_reservoir(self, seed_offset: int) -> LocalReplay:
        """An empty reservoir of the current task's share of the memory."""
        seed = self.run.workers.seed(seed_offset)
        return LocalReplay(ReservoirBuffer(self.per_task, seed=seed, pixel_fields=self.pixel_fields))

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        if len(self._task_samples):
            self.replay.insert(self._task_samples.stored(pixels=True))


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def flat_gradient(gradients: Sequence[torch.Tensor | None], parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    """`gradients` (one per parameter, None for a parameter the loss does not reach) as one vector."""
    return torch.cat([
        (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(gradients, parameters)
    ])


def write_flat_gradient(parameters: list[torch.nn.Parameter], vector: torch.Tensor) -> None:
    """Copy the flat `vector` into the `.grad` of each parameter that has one."""
    offset = 0
    for p in parameters:
        count = p.numel()
        if p.grad is not None:
            p.grad.copy_(vector[offset : offset + count].view_as(p))
        offset += count


def project_conflicting(gradient: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """A-GEM's rule: `gradient` unchanged if it does not conflict with `reference`, otherwise
    its projection on the half-space where the two agree (flat vectors)."""
    dot = torch.dot(gradient, reference)
    if dot >= 0:
        return gradient
    return gradient - (dot / torch.dot(reference, reference).clamp_min(1e-12)) * reference
