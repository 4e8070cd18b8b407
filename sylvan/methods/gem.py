"""`gem`: gradient episodic memory (Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual
Learning", NeurIPS 2017).

How it follows its paper, and what it adds: docs/method-notes.md, section gem."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods.core.episodic_memory import EpisodicMemoryMethod, flat_gradient, trainable_parameters
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting

# added to the diagonal of G G^T: the memories' gradients may be linearly dependent (the value of
# the reference implementations)
RIDGE = 1e-3


def nonnegative_quadratic_minimum(matrix: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """argmin over u >= 0 of 1/2 u^T A u + b^T u, for a symmetric positive definite A (n x n,
    n small), by the active-set method of Lawson & Hanson's NNLS applied to the quadratic: the
    variables allowed to be positive grow one at a time (the one whose increase lowers the
    objective fastest), and each unconstrained minimum over them that leaves the feasible set is
    cut back to its boundary. It ends, exactly, in at most a few passes per variable."""
    n = linear.shape[0]
    solution = np.zeros(n)
    scale = float(np.abs(linear).max(initial=0.0))
    if scale == 0.0:
        return solution
    threshold = 1e-12 * scale
    free = np.zeros(n, dtype=bool)
    for _ in range(10 * n + 10):
        gradient = matrix @ solution + linear
        candidates = ~free & (gradient < -threshold)
        if not candidates.any():
            return solution
        entering = int(np.argmin(np.where(candidates, gradient, np.inf)))
        free[entering] = True
        for step in range(n + 1):
            chosen = np.flatnonzero(free)
            trial = np.zeros(n)
            trial[chosen] = np.linalg.solve(matrix[np.ix_(chosen, chosen)], -linear[chosen])
            if (trial[chosen] > 0).all():
                solution = trial
                break
            if step == 0 and trial[entering] <= 0:
                # only rounding can make the entering variable's own optimum non-positive: the
                # objective cannot decrease any further
                free[entering] = False
                return solution
            blocking = chosen[trial[chosen] <= 0]
            ratios = solution[blocking] / (solution[blocking] - trial[blocking])
            solution = solution + ratios.min() * (trial - solution)
            solution[blocking[np.argmin(ratios)]] = 0.0  # on the boundary, without rounding
            free &= solution > 0
            solution[~free] = 0.0
    raise RuntimeError("the quadratic program of gem did not converge")


def project_to_cone(gradient: torch.Tensor, memories: torch.Tensor, margin: float) -> torch.Tensor:
    """GEM's update: the vector closest to `gradient` whose dot product with each row of
    `memories` (the t finished tasks' gradients) is not negative, through the dual program with
    the given margin (module docstring). Flat vectors, on any device."""
    products = (memories @ memories.T).double().cpu().numpy()
    products = 0.5 * (products + products.T) + RIDGE * np.eye(len(products))
    agreement = (memories @ gradient).double().cpu().numpy()
    # v = u + margin with u >= 0: the linear term of u gathers the margin's share
    shift = products @ np.full(len(products), margin) + agreement
    weights = nonnegative_quadratic_minimum(products, shift) + margin
    return gradient + torch.from_numpy(weights).to(memories) @ memories


@dataclass
class GEM(EpisodicMemoryMethod):
    """GEM. With data-parallel workers, each task's memory gradient is averaged over the workers
    like the minibatch gradient, so that every worker solves the same program."""

    name: ClassVar[str] = "gem"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.01  # learning rate
    margin: float = 1.0  # memory strength: lower bound of the dual weights of the memories' gradients

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "margin")

    def configure(self, run: Setting) -> None:
        super().configure(run)
        self._task_slots: list[torch.Tensor] = []

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        self._group_memory()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._group_memory()

    def _group_memory(self) -> None:
        """The memory's slots of each finished task, by task label (sorted: the same rows on every
        worker). The memory changes only when a task ends, so the steps index it with these,
        without waiting on the device to find each task's samples."""
        self._task_slots = []
        if not len(self.replay):
            return
        labels = self.replay.stored().get("t")
        if labels is None:
            raise ConfigurationError("gem groups its memory by task and needs task labels at training time")
        self._task_slots = [torch.nonzero(labels == task).squeeze(1) for task in torch.unique(labels).tolist()]

    def memory_gradients(self) -> torch.Tensor | None:
        """One row per finished task: the gradient of the loss on that task's memory (inputs
        augmented as the minibatch is), or None while the memory is empty."""
        if not self._task_slots:
            return None
        parameters = trainable_parameters(self.model)
        rows = []
        for slots in self._task_slots:
            stored = self.replay.gather(slots)
            x, y = stored["x"], stored["y"]
            loss = F.cross_entropy(self.learner(self.augment_inputs(x)), y)
            rows.append(flat_gradient(self.gradients(loss, parameters), parameters))
        return torch.stack(rows)

    def project(self, gradient: torch.Tensor, memory_gradients: torch.Tensor) -> torch.Tensor:
        if bool((memory_gradients @ gradient < 0).any()):
            return project_to_cone(gradient, memory_gradients, self.margin)
        return gradient
