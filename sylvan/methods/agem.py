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
import torch.nn.functional as F

from sylvan.methods.core.episodic_memory import (
    EpisodicMemoryMethod,
    flat_gradient,
    project_conflicting,
    trainable_parameters,
)
from sylvan.methods.core.on_agent import AppliesToAgents
from sylvan.methods.parts.agent_gradient_memory import AgentGradientMemory
from sylvan.settings.assumptions import TaskBoundaries


@dataclass
class AGEM(AppliesToAgents, EpisodicMemoryMethod):
    """A-GEM. With data-parallel workers, the reference gradient is averaged over the workers
    like the minibatch gradient, so that every worker projects the same way."""

    name: ClassVar[str] = "agem"
    target_setting: ClassVar[type] = TaskBoundaries

    lr: float = 0.1  # learning rate
    reference_batch_size: int = 128  # memory samples behind each reference gradient

    def agent_part(self, agent: Any) -> AgentGradientMemory:
        """On an agent: an episodic memory of buffer_size / nb_tasks transitions of each finished
        task, and each step of a protected network projected against its loss there."""
        per_task = max(self.buffer_size // agent.run.nb_tasks, 1)
        return AgentGradientMemory(agent, per_task, self.reference_batch_size, seed=agent.run.seed)

    checkpoint_complete = True  # the memory is the episodic memory's; its gradient lives within a step

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "reference_batch_size")

    def memory_gradients(self) -> torch.Tensor | None:
        """The reference gradient: of the loss on `reference_batch_size` samples drawn from the memory."""
        reference = self.replay.take(self.reference_batch_size)
        if not reference:
            return None
        parameters = trainable_parameters(self.model)
        reference_loss = F.cross_entropy(self.learner(self.augment_inputs(reference["x"])), reference["y"])
        return flat_gradient(self.gradients(reference_loss, parameters), parameters)

    def project(self, gradient: torch.Tensor, memory_gradients: torch.Tensor) -> torch.Tensor:
        return project_conflicting(gradient, memory_gradients)
