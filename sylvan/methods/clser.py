"""`clser`: CLS-ER, complementary-learning-system experience replay (Arani, Sarfraz & Zonooz,
"Learning Fast, Learning Slow: A General Continual Learning Method based on Complementary
Learning System", ICLR 2022).

How it follows its paper, and what it adds: docs/method-notes.md, section clser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods.core.replay import ReplayMethod
from sylvan.methods.core.supervised import Batch, evaluating
from sylvan.methods.parts.distillation import frozen_copy
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting

INFERENCE_MODELS = ("stable", "plastic", "working")
MEMORY_UPDATES_SEED = 7919  # offset of the run's seed for the memories' update draws


@dataclass
class CLSER(ReplayMethod):
    """CLS-ER: experience replay with a plastic and a stable moving average of the network, whose
    logits the replayed samples are held to."""

    name: ClassVar[str] = "clser"
    target_setting: ClassVar[type[Setting]] = OnlineSetting

    lr: float = 0.03  # learning rate
    replay_size: int = 128  # r: samples replayed with each minibatch (0: as many as the batch size)
    reg_weight: float = 2.0  # weight of the consistency loss (MSE to the semantic memories' logits)
    plastic_update_freq: float = 1.0  # probability that the plastic memory is updated after a step
    plastic_alpha: float = 0.99  # the plastic memory's decay: the fraction of its weights an update keeps
    stable_update_freq: float = 0.9  # probability that the stable memory is updated after a step
    stable_alpha: float = 0.99  # the stable memory's decay
    inference_model: str = "stable"  # the network that predicts: stable, plastic (the memories) or working

    state_attributes: ClassVar[tuple[str, ...]] = ("plastic_model", "stable_model", "steps", "update_draws")

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "reg_weight")
        self.require_in(0, 1, "plastic_update_freq", "plastic_alpha", "stable_update_freq", "stable_alpha")
        if self.inference_model not in INFERENCE_MODELS:
            raise ConfigurationError(
                f"--inference_model must be one of {', '.join(INFERENCE_MODELS)}, got {self.inference_model!r}"
            )

    def configure(self, run: Any) -> None:
        super().configure(run)
        # copies whose weights change only by averaging (each forward sets its mode: `memory_forward`)
        self.plastic_model = frozen_copy(self.model)
        self.stable_model = frozen_copy(self.model)
        self.steps = 0  # optimizer steps of the run: the memories' warm-up
        self.update_draws = torch.Generator().manual_seed(run.seed + MEMORY_UPDATES_SEED)

    def training_step(self, batch: Batch) -> torch.Tensor:
        replay = self.draw_replay(self.replay_count(len(batch.y)))
        self.remember(self.stored_fields(batch))  # the replay is drawn: on data-parallel workers this sends on
        if not replay:
            return F.cross_entropy(self.learner(batch.x), batch.y)
        x, y = torch.cat([batch.x, replay["x"]]), torch.cat([batch.y, replay["y"]])
        logits = self.learner(x)
        target = self.memory_logits(replay["x"], replay["y"])
        consistency = F.mse_loss(logits[len(batch.y) :], target)
        return F.cross_entropy(logits, y) + self.reg_weight * consistency

    def memory_logits(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """For each sample, the logits of the memory (plastic or stable) that gives its label `y`
        the higher softmax probability: the consistency loss's target."""
        with torch.no_grad():
            stable, plastic = (self.memory_forward(memory, x) for memory in (self.stable_model, self.plastic_model))
            label = y.unsqueeze(1)
            stable_wins = F.softmax(stable, 1).gather(1, label) > F.softmax(plastic, 1).gather(1, label)
            return torch.where(stable_wins, stable, plastic)

    def memory_forward(self, memory: nn.Module, x: torch.Tensor) -> torch.Tensor:
        memory.to(x.device).train(self.model.training)
        return memory(x)

    def after_step(self) -> None:
        super().after_step()
        self.run.workers.average_statistics(self.plastic_model, self.stable_model)
        self.steps += 1
        for memory, frequency, alpha in (
            (self.plastic_model, self.plastic_update_freq, self.plastic_alpha),
            (self.stable_model, self.stable_update_freq, self.stable_alpha),
        ):
            if torch.rand(1, generator=self.update_draws).item() < frequency:
                self.average_into(memory, min(1 - 1 / (self.steps + 1), alpha))

    def average_into(self, memory: nn.Module, decay: float) -> None:
        """memory <- decay * memory + (1 - decay) * working network, parameter by parameter."""
        with torch.no_grad():
            for averaged, current in zip(memory.parameters(), self.model.parameters()):
                averaged.lerp_(current.to(averaged.device), 1 - decay)

    def inference_network(self) -> nn.Module:
        return {"stable": self.stable_model, "plastic": self.plastic_model, "working": self.model}[
            self.inference_model
        ]

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        network = self.inference_network()
        if network is self.model:
            return super().scores(x, task_labels)
        with evaluating(network.to(x.device)):
            return self.mask_to_tasks(network(x), task_labels)
