"""`rwalk`: Riemannian walk (Chaudhry, Dokania, Ajanthan & Torr, "Riemannian Walk for Incremental
Learning: Understanding Forgetting and Intransigence", ECCV 2018).

How it follows its paper, and what it adds: docs/method-notes.md, section rwalk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from sylvan.methods.core.regularization import WeightRegularization, on_device_of
from sylvan.methods.parts.importance import scaled_to_unit
from sylvan.methods.parts.path_integral import PathIntegral
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


@dataclass
class RWalk(WeightRegularization):
    """Riemannian walk: EWC++'s running Fisher plus a path-integral score measured in the Fisher
    metric, both anchoring the weights. Needs task boundaries."""

    name: ClassVar[str] = "rwalk"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.1  # learning rate
    rwalk_lambda: float = 1.0  # strength of the quadratic penalty
    alpha: float = 0.9  # weight of each interval's squared gradients in the running Fisher (EWC++)
    score_interval: int = 10  # steps between updates of the running Fisher and the scores
    xi: float = 1e-3  # damping of the scores where a weight barely moved

    state_attributes: ClassVar[tuple[str, ...]] = ("fisher", "score")

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "rwalk_lambda")
        self.require_in(0, 1, "alpha", low_open=True)
        self.require_at_least(1, "score_interval")
        self.require_at_least(0, "xi", strict=True)

    def configure(self, run: Any) -> None:
        super().configure(run)
        zeros = {name: torch.zeros_like(weight.detach()) for name, weight in self.model.named_parameters()}
        self.fisher = zeros  # F, running over the stream
        self.score: dict[str, torch.Tensor] | None = None  # s, the tasks' scores averaged as they end
        self.task_score = {name: torch.zeros_like(v) for name, v in zeros.items()}  # s_task so far
        self.path = PathIntegral(self.model)  # dL of the current interval, per weight
        self.squared_gradients = {name: torch.zeros_like(v) for name, v in zeros.items()}  # summed in the interval
        self.interval_start = self.current_weights()
        self.interval_steps = 0

    @property
    def penalty_strength(self) -> float:
        return self.rwalk_lambda

    def task_loss_gradients(self) -> dict[str, torch.Tensor]:
        """Each parameter's gradient of the task's loss alone: the learner's, less the penalty's."""
        gradients = {}
        for name, weight in self.model.named_parameters():
            if weight.grad is None:
                continue
            gradients[name] = weight.grad.detach() - self.penalty_gradient(name, weight)
        return gradients

    def after_backward(self) -> None:
        gradients = self.task_loss_gradients()
        self.path.record(gradients)
        for name, gradient in gradients.items():
            on_device_of(self.squared_gradients, name, gradient).add_(gradient.pow(2))

    def after_step(self) -> None:
        self.path.accumulate()
        self.interval_steps += 1
        if self.interval_steps == self.score_interval:
            self.close_interval()

    def close_interval(self) -> None:
        """Fold the interval's mean squared gradient into the running Fisher, then add the
        interval's score to the task's, and start the next interval."""
        for name, weight in self.model.named_parameters():
            weight = weight.detach()
            mean_square = on_device_of(self.squared_gradients, name, weight) / self.interval_steps
            fisher = on_device_of(self.fisher, name, weight).mul_(1 - self.alpha).add_(self.alpha * mean_square)
            moved = weight - on_device_of(self.interval_start, name, weight)
            decrease = on_device_of(self.path.total, name, weight)
            on_device_of(self.task_score, name, weight).add_(
                torch.relu(decrease / (self.xi + 0.5 * fisher * moved.pow(2))))
        self.path.reset()
        for gradient_sum in self.squared_gradients.values():
            gradient_sum.zero_()
        self.interval_start = self.current_weights()
        self.interval_steps = 0

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        if self.interval_steps:
            self.close_interval()
        task_score = {name: s.clone() for name, s in self.task_score.items()}
        for s in self.task_score.values():
            s.zero_()
        if self.score is None:
            self.score = task_score
        else:
            self.score = {name: (self.score[name].to(s.device) + s) / 2 for name, s in task_score.items()}
        fisher, score = scaled_to_unit(self.fisher), scaled_to_unit(self.score)
        # the importance is recomputed, not accumulated: decay 0 drops the previous one
        self.consolidate({name: fisher[name] + score[name] for name in fisher}, decay=0.0)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A checkpoint is taken where a task ends: the interval and the task's score start afresh."""
        super().load_state_dict(state)
        self.fisher, self.score = state["fisher"], state["score"]
        self.interval_start = self.current_weights()
