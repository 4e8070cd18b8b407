"""What weight-regularization methods (`ewc`, `mas`, `si`, `rwalk`) share: a quadratic penalty that anchors
each weight with its own importance, lambda * sum_i Omega_i (w_i - w*_i)^2, added to the
cross-entropy of every step once a task has ended.

A method of this family subclasses `WeightRegularization`, says how strong the penalty is
(`penalty_strength`, its own flag) and how a finished task's importance is measured, and hands
that to `consolidate` at the task's end; the base keeps the importance and the anchor, computes
the penalty and the loss, and saves both in checkpoints. Under SGD, an importance is taken as at
most what a step of the run's learning rate stays stable with (`stable_importance`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.methods.core.supervised import Batch, SupervisedMethod


def on_device_of(tensors: dict[str, torch.Tensor], name: str, like: torch.Tensor) -> torch.Tensor:
    """tensors[name], moved in the dict to the device of `like` where it is elsewhere: state kept
    per parameter follows the model to its device once (the model moves when a fit starts), not
    at every step."""
    if tensors[name].device != like.device:
        tensors[name] = tensors[name].to(like.device)
    return tensors[name]


def weighted_squared_distance(
    model: nn.Module, importance: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor], most: float | None = None
) -> torch.Tensor:
    """sum_i importance_i * (w_i - anchor_i)^2 over the parameters of `model`, each importance
    taken as at most `most` where given."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, weight in model.named_parameters():
        distance = (weight - on_device_of(anchor, name, weight)).pow(2)
        weights = on_device_of(importance, name, weight)
        total = total + ((weights if most is None else weights.clamp(max=most)) * distance).sum()
    return total


def folded_importance(running: dict[str, torch.Tensor] | None, task: dict[str, torch.Tensor],
                      decay: float = 1.0) -> dict[str, torch.Tensor]:
    """A finished task's importance folded into the running one, Omega <- decay * Omega + task
    (the task's alone the first time), per parameter name."""
    if running is None:
        return task
    return {name: decay * running[name].to(value.device) + value for name, value in task.items()}


def stable_importance(optimizer: str, lr: float, strength: float) -> float | None:
    """The largest importance an SGD step on lambda * sum_i Omega_i (w_i - w*_i)^2 stays stable
    with. The penalty's curvature in w_i is 2 lambda Omega_i, and a step of learning rate lr
    multiplies the distance to the anchor by 1 - 2 lr lambda Omega_i: beyond Omega_i = 1 / (lr
    lambda) the weight swings across the anchor farther each step, until training diverges (`ewc`
    at its Seq-MNIST strength on the CTrL streams, whose larger inputs give a Fisher ten times
    Seq-MNIST's). At 1 / (2 lr lambda) a step lands on the anchor (critical damping, stable with
    any momentum below 1): the most a discrete step can hold a weight there, so larger importances
    are taken as that. None under Adam (`optimizer` "adam"), whose steps are bounded by lr whatever
    the curvature, and for a penalty or learning rate of 0."""
    if optimizer != "sgd" or strength <= 0 or lr <= 0:
        return None
    return 1.0 / (2.0 * lr * strength)


@dataclass
class WeightRegularization(SupervisedMethod):
    """Fine-tuning with a quadratic penalty that pulls each weight toward its anchor w* (the
    weights when the last task ended), in proportion to its importance Omega. Both are None
    until `consolidate` first runs; until then the loss is the cross-entropy alone."""

    state_attributes: ClassVar[tuple[str, ...]] = ("importance", "anchor")

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.importance: dict[str, torch.Tensor] | None = None  # Omega, per parameter name
        self.anchor: dict[str, torch.Tensor] | None = None  # w*, per parameter name

    @property
    def penalty_strength(self) -> float:
        """lambda, the weight of the penalty in the loss (the method's own flag)."""
        raise NotImplementedError

    def current_weights(self) -> dict[str, torch.Tensor]:
        """A copy of the model's parameters, by name."""
        return {name: weight.detach().clone() for name, weight in self.model.named_parameters()}

    def penalty(self) -> torch.Tensor:
        """sum_i Omega_i (w_i - w*_i)^2 over every parameter (0 before the first consolidation),
        each Omega_i at most `stable_importance()`."""
        if self.importance is None or self.anchor is None:
            return torch.zeros(())
        return weighted_squared_distance(self.model, self.importance, self.anchor, self.stable_importance())

    def penalty_gradient(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """The gradient of lambda times the penalty in the parameter `name` (`weight`): 2 lambda
        Omega_i (w_i - w*_i), each Omega_i at most `stable_importance()`, as `penalty` takes it
        (0 before the first consolidation)."""
        if self.importance is None or self.anchor is None or self.penalty_strength <= 0:
            return torch.zeros_like(weight)
        importance, most = on_device_of(self.importance, name, weight), self.stable_importance()
        importance = importance if most is None else importance.clamp(max=most)
        return 2 * self.penalty_strength * importance * (weight.detach() - on_device_of(self.anchor, name, weight))

    def stable_importance(self) -> float | None:
        """The largest importance an SGD step of the run's learning rate on the penalty stays
        stable with (`stable_importance`)."""
        return stable_importance(self.optimizer, self.current_lr, self.penalty_strength)

    def training_step(self, batch: Batch) -> torch.Tensor:
        loss = F.cross_entropy(self.learner(batch.x), batch.y)
        if self.importance is not None and self.penalty_strength > 0:
            loss = loss + self.penalty_strength * self.penalty()
        return loss

    def consolidate(self, task_importance: dict[str, torch.Tensor], decay: float = 1.0) -> None:
        """Fold a finished task's importance into the running one, Omega <- decay * Omega +
        task_importance (the task's alone the first time), and move the anchor to the current
        weights."""
        self.importance = folded_importance(self.importance, task_importance, decay)
        self.anchor = self.current_weights()
