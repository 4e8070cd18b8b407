"""`mer`: meta-experience replay (Riemer et al., "Learning to Learn without Forgetting by
Maximizing Transfer and Minimizing Interference", ICLR 2019), in the form the DER paper compared
it (Buzzega et al., NeurIPS 2020, whose code the figures of most later papers come from).

How it follows its paper, and what it adds: docs/method-notes.md, section mer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.func import functional_call

from sylvan.methods.core.episodic_memory import flat_gradient, write_flat_gradient
from sylvan.methods.core.replay import ReplayMethod
from sylvan.methods.core.supervised import Batch
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting


@dataclass
class MER(ReplayMethod):
    """Meta-experience replay. Needs no task boundaries, so it runs on every supervised setting."""

    name: ClassVar[str] = "mer"
    target_setting: ClassVar[type[Setting]] = OnlineSetting
    checkpoint_complete: ClassVar[bool] = True  # its state is the buffer's; the later batches live within a step

    lr: float = 0.1  # learning rate
    replay_size: int = 128  # r: samples of each batch drawn from the buffer (0: as many as the batch size)
    beta: float = 1.0  # within-batch Reptile update: fraction of each batch's SGD step kept
    gamma: float = 1.0  # across-batch Reptile update: fraction of the k batches' combined step kept
    batch_num: int = 1  # k: batches per minibatch, each of its new samples and a replay draw of its own

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "beta", "gamma", strict=True)
        self.require_at_least(1, "batch_num")

    def configure(self, run: Any) -> None:
        super().configure(run)
        self._later_batches: list[tuple[torch.Tensor, torch.Tensor]] = []  # this step's batches 2..k

    def replay_draws(self, batch_size: int) -> tuple[int, ...]:
        return (self.replay_count(batch_size),) * self.batch_num

    def training_step(self, batch: Batch) -> torch.Tensor:
        """The loss of the first of the k batches; the others wait for `after_backward`. Every
        draw is made before the new samples are stored, so no batch replays them."""
        count = self.replay_count(len(batch.y))
        replays = [self.draw_replay(count) for _ in range(self.batch_num)]
        self.remember(self.stored_fields(batch))
        self._later_batches = [self._joined(batch, replay) for replay in replays[1:]]
        x, y = self._joined(batch, replays[0])
        return F.cross_entropy(self.learner(x), y)

    @staticmethod
    def _joined(batch: Batch, replay: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if not replay:
            return batch.x, batch.y
        return torch.cat([batch.x, replay["x"]]), torch.cat([batch.y, replay["y"]])

    def after_backward(self) -> None:
        """Turn the first batch's gradient g_1 into gamma * beta * (g_1 + ... + g_k), each g_i taken
        where the SGD steps of beta * lr on the batches before it lead."""
        later, self._later_batches = self._later_batches, []
        scale = self.gamma * self.beta
        if not later and scale == 1.0:
            return  # experience replay's step
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        total = flat_gradient([p.grad for p in parameters], parameters)
        if later:
            weights = self.sgd_stepped_weights(requires_grad=True, fraction=self.beta)  # where batch 1's step leads
            step, sizes = self.beta * self.step_lr(), [p.numel() for p in parameters]
            for x, y in later:
                loss = F.cross_entropy(functional_call(self.model, weights, (x,)), y)
                gradients = self.gradients(loss, list(weights.values()))
                gradient = self.run.workers.mean(flat_gradient(gradients, parameters))
                total.add_(gradient)
                weights = {name: (w.detach() - step * g.view_as(w)).requires_grad_(True)
                           for (name, w), g in zip(weights.items(), gradient.split(sizes))}
        write_flat_gradient(parameters, total.mul_(scale))
