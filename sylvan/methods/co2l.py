"""`co2l`: contrastive continual learning (Cha, Lee & Shin, "Co2L: Contrastive Continual
Learning", ICCV 2021).

Co2L learns the features by contrast alone and a linear classifier over them apart, in two steps.

1. **Representation.** Each minibatch of b new samples is joined by r samples drawn from a
   reservoir buffer (as `rehearsal` draws them), and every one of the b + r by a random view of
   it (`ContrastiveViews`); the 2(b + r) inputs go through the backbone's features and a
   projection head, whose L2-normalized outputs z learn by two losses.

   - *Asymmetric SupCon* at temperature T: only the new samples and their views are anchors,
     pulled towards the other samples of their class and pushed from the rest, replayed samples
     among them; a replayed sample is a positive or a negative, never an anchor, so that the old
     classes' features are not drawn towards one another by their few stored samples. The anchors'
     terms, scaled by T / T_b, are summed and divided by all 2(b + r) inputs.
   - *Instance-wise relation distillation* (IRD), from the second task on: for each input, the
     distribution over the other inputs of softmax(z . z' / kappa) under the network as it was at
     the end of the previous task (kappa* = `past_temperature`) is the target of the same
     distribution under the network learning (kappa = `current_temperature`), by cross-entropy,
     weighted by `distill_power`. It keeps how the inputs relate to one another rather than
     where each lies.

2. **Linear probe.** At the end of each task, with the network frozen, a linear classifier over
   the features (before the head) is trained from zero on the buffer's samples, each epoch
   drawn with replacement so that every class is as likely (class-balanced), a fresh random view
   of each sample per draw with `probe_views`: SGD with momentum 0.9, `probe_lr` multiplied by
   0.2 after 60, 75 and 90 percent of `probe_epochs`. Predictions are its logits. On data-parallel
   settings it learns from the union of every worker's buffer, so every worker predicts alike.
   With views, each epoch passes the buffer through the backbone again (100 passes of 200
   CIFAR-sized images through `resnet18_reduced` take about 18 s on two CPU cores); without, one
   pass serves every epoch.

Written from the authors' code (`main.py`, `losses_negative_only.py`, `main_linear_buffer.py`),
whose defaults for the temperatures are kept: T 0.5 and T_b 0.07 (their CIFAR-10 run), kappa 0.2,
kappa* 0.01, a projection of 128. Differences, each for sylvan's stream: the authors' code joins
the buffer (of earlier tasks only, filled at each task's start) to the task's data and shuffles
the union, where each minibatch here is joined by a replay draw from a reservoir buffer that holds
the current task's samples too (they are positives and negatives, not anchors); and it trains
the probe on the task's data and the buffer, where the stream is not kept here and the probe
learns from the buffer alone. The previous task's network runs in evaluation mode, as every
teacher in sylvan does (the authors' code leaves its batch normalization in training mode).
Needs task boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods.core.contrastive_replay import ContrastiveReplayMethod
from sylvan.methods.core.supervised import Batch, evaluating
from sylvan.methods.parts.contrastive import (
    ContrastiveViews,
    asymmetric_supervised_contrastive_loss,
    relation_distillation_loss,
)
from sylvan.methods.parts.projection import projections, with_projection_head
from sylvan.methods.parts.teacher import Teacher
from sylvan.methods.parts.workers import concatenated_over_workers, copy_from_first_worker
from sylvan.minibatches import float_inputs
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting

PROBE_SEED = 40_031  # offset of the run's seed for the probe's draws (the same on every worker)
PROBE_MILESTONES = (0.6, 0.75, 0.9)  # fractions of the probe's epochs after which its lr drops
PROBE_GAMMA = 0.2  # ... by this factor
PROBE_MOMENTUM = 0.9


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer whose weights and bias are all zero: every class scores alike."""
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def class_balanced_draw(labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` positions in `labels` (a CPU tensor), drawn with replacement so that each class
    present is drawn as often as any other in expectation: each sample's weight is one over its
    class's size (the authors' `WeightedRandomSampler`)."""
    weights = 1.0 / torch.bincount(labels).double()[labels]
    return torch.multinomial(weights, count, replacement=True, generator=generator)


@dataclass
class Co2L(ContrastiveReplayMethod):
    """Co2L: asymmetric SupCon on the new samples and relation distillation of the previous
    task's network learn the features; a class-balanced linear probe on the buffer predicts."""

    name: ClassVar[str] = "co2l"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting
    views_seed: ClassVar[int] = 40_027

    lr: float = 0.1  # learning rate
    temperature: float = 0.5  # T of the asymmetric supervised contrastive loss
    base_temperature: float = 0.07  # T_b: the contrastive loss is scaled by T / T_b
    current_temperature: float = 0.2  # kappa: IRD's temperature of the network learning
    past_temperature: float = 0.01  # kappa*: IRD's temperature of the previous task's network
    distill_power: float = 1.0  # weight of the relation distillation (0: none)
    probe_epochs: int = 100  # epochs of the linear probe over the buffer at the end of each task
    probe_lr: float = 0.1  # learning rate the probe starts from
    probe_batch_size: int = 256  # buffer samples per step of the probe
    probe_views: bool = True  # train the probe on a random view of each sample drawn
    projection_dim: int = 128  # outputs of the projection head the loss is computed on

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "projection_dim")
        self.require_at_least(
            0, "temperature", "base_temperature", "current_temperature", "past_temperature", "probe_lr", strict=True
        )
        self.require_at_least(0, "distill_power")
        self.require_at_least(1, "probe_epochs", "probe_batch_size")
        if self.buffer_size == 0:
            raise ConfigurationError("--buffer_size must be at least 1: co2l's linear probe learns from the buffer")

    def build_model(self) -> nn.Module:
        """The backbone with the projection head, and the probe: a linear layer over the features,
        zero until the first task ends and trained only then (never by the optimizer of `fit`)."""
        model = with_projection_head(self, super().build_model(), self.backbone_name(self.run))
        model.probe = zero_linear(model.feature_dim, self.run.num_classes).requires_grad_(False)
        return model

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda model, name: with_projection_head(self, model, name))

    def configure(self, setting: Any) -> None:
        super().configure(setting)
        self.teacher = self.hold("teacher", lambda: Teacher(lambda: self.model))
        self.finished_tasks = 0

    # ----- the representation ----------------------------------------------------------------

    def training_step(self, batch: Batch) -> torch.Tensor:
        incoming = len(batch.y)
        x, y = self.with_views(batch)  # the minibatch, the replay draw, then a view of each of them
        anchors = torch.zeros(len(y), dtype=torch.bool, device=y.device)
        anchors[:incoming] = True
        anchors[len(y) // 2 : len(y) // 2 + incoming] = True
        projected = projections(self.model, x)
        loss = asymmetric_supervised_contrastive_loss(projected, y, anchors, self.temperature,
                                                      self.base_temperature)
        if self.teacher.network is None or self.distill_power == 0:
            return loss
        self.teacher.network.to(x.device)
        with torch.no_grad():
            past = projections(self.teacher.network, x)
        relation = relation_distillation_loss(projected, past, self.current_temperature, self.past_temperature)
        return loss + self.distill_power * relation

    # ----- the linear probe ------------------------------------------------------------------

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)  # the teacher of the next task, without the probe trained yet
        self.train_probe()
        self.finished_tasks += 1

    def train_probe(self) -> None:
        """Train the probe from zero on the buffer (every worker's), the network frozen."""
        device = self.run.device
        self.learner.to(device)
        stored = self.buffer.get_all()
        x = concatenated_over_workers(stored["x"].to(device))
        y = concatenated_over_workers(stored["y"].to(device))
        seed = self.run.seed * 1000 + PROBE_SEED + self.finished_tasks
        generator = torch.Generator().manual_seed(seed)
        views = ContrastiveViews(seed=seed, crop_scale=self.crop_scale) if self.probe_views else None
        probe, optimizer, schedule = self.untrained_probe(device)
        labels = y.cpu()
        with evaluating(self.model) as model:

            def features_of(rows: torch.Tensor) -> torch.Tensor:
                inputs = float_inputs(x[rows])
                with torch.no_grad():
                    return model.features(inputs if views is None else views(inputs)).flatten(1).float()

            # without views a sample's features are the same at every draw: one pass computes them all
            every = torch.arange(len(y), device=device).split(self.probe_batch_size)
            fixed = None if views is not None else torch.cat([features_of(rows) for rows in every])
            with torch.enable_grad():
                for _ in range(self.probe_epochs):
                    drawn = class_balanced_draw(labels, len(labels), generator)
                    for rows in drawn.to(device).split(self.probe_batch_size):
                        features = features_of(rows) if fixed is None else fixed[rows]
                        loss = F.cross_entropy(probe(features), y[rows])
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                    schedule.step()
        self.model.probe.load_state_dict(probe.state_dict())
        copy_from_first_worker(self.model.probe)

    def untrained_probe(self, device: torch.device) -> tuple[nn.Linear, torch.optim.SGD, Any]:
        """A probe at zero on `device`, its optimizer and its step schedule over the epochs."""
        probe = zero_linear(self.model.feature_dim, self.run.num_classes).to(device)
        optimizer = torch.optim.SGD(probe.parameters(), lr=self.probe_lr, momentum=PROBE_MOMENTUM)
        milestones = sorted({max(1, round(f * self.probe_epochs)) for f in PROBE_MILESTONES})
        return probe, optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=PROBE_GAMMA)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """The probe's logits over the features of `x`."""
        return self.mask_to_tasks(self.model.probe(self.model.features(x).flatten(1)), task_labels)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "finished_tasks": self.finished_tasks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.finished_tasks = state["finished_tasks"]
