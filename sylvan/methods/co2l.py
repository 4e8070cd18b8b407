"""`co2l`: contrastive continual learning (Cha, Lee & Shin, "Co2L: Contrastive Continual
Learning", ICCV 2021).

How it follows its paper, and what it adds: docs/method-notes.md, section co2l."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods.core.contrastive_replay import ContrastiveReplayMethod
from sylvan.methods.core.supervised import Batch
from sylvan.methods.parts.contrastive import (
    ContrastiveViews,
    asymmetric_supervised_contrastive_loss,
    relation_distillation_loss,
)
from sylvan.methods.parts.linear_probe import ProbeSchedule, trained_probe, zero_linear
from sylvan.methods.parts.projection import projections
from sylvan.methods.parts.teacher import Teacher
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting

PROBE_SEED = 40_031  # offset of the run's seed for the probe's draws (the same on every worker)


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

    state_attributes: ClassVar[tuple[str, ...]] = ("finished_tasks",)

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
        model = self.with_projection(super().build_model(), self.backbone_name(self.run))
        model.probe = zero_linear(model.feature_dim, self.run.num_classes).requires_grad_(False)
        return model

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda model, name: self.with_projection(model, name))

    def configure(self, run: Any) -> None:
        super().configure(run)
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
        stored = self.replay.stored()
        x = self.run.workers.concatenated(stored["x"].to(device))
        y = self.run.workers.concatenated(stored["y"].to(device))
        seed = self.run.seed * 1000 + PROBE_SEED + self.finished_tasks
        generator = torch.Generator().manual_seed(seed)
        views = ContrastiveViews(seed=seed, crop_scale=self.crop_scale) if self.probe_views else None
        probe = trained_probe(self.model, x, y, self.run.num_classes, ProbeSchedule(
            self.probe_epochs, self.probe_lr, self.probe_batch_size), generator, views)
        self.model.probe.load_state_dict(probe.state_dict())
        self.run.workers.copy_from_first(self.model.probe)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """The probe's logits over the features of `x`."""
        return self.mask_to_tasks(self.model.probe(self.model.features(x).flatten(1)), task_labels)
