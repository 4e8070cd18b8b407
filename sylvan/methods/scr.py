"""`scr`: supervised contrastive replay (Mai et al., "Supervised Contrastive Replay: Revisiting the
Nearest Class Mean Classifier in Online Class-Incremental Continual Learning", CVPR Workshops 2021).

How it follows its paper, and what it adds: docs/method-notes.md, section scr."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods.core.contrastive_replay import ContrastiveReplayMethod
from sylvan.methods.core.supervised import Batch, evaluating
from sylvan.methods.parts.contrastive import supervised_contrastive_loss
from sylvan.methods.parts.nearest_mean import class_feature_sums, class_means_from_sums, nearest_mean_scores
from sylvan.methods.parts.projection import projections
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting


@dataclass
class SCR(ContrastiveReplayMethod):
    """SCR: SupCon on the minibatch and a replay draw with a random view of each; nearest class
    mean of the stored samples' features to predict."""

    name: ClassVar[str] = "scr"
    target_setting: ClassVar[type[Setting]] = OnlineSetting  # needs no boundaries: runs everywhere

    lr: float = 0.1  # learning rate
    replay_size: int = 100  # r: samples replayed with each minibatch (0: as many as the batch size)
    temperature: float = 0.07  # T of the supervised contrastive loss
    projection_dim: int = 128  # outputs of the projection head the loss is computed on

    state_attributes: ClassVar[tuple[str, ...]] = ("class_means",)

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "temperature", strict=True)
        self.require_at_least(1, "projection_dim")
        if self.buffer_size == 0:
            raise ConfigurationError(
                "--buffer_size must be at least 1: scr classifies by the means of the stored samples' features"
            )

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda model, name: self.with_projection(model, name))

    def build_model(self) -> nn.Module:
        return self.with_projection(super().build_model(), self.backbone_name(self.run))

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.class_means: torch.Tensor | None = None  # (classes, d), NaN rows: nothing stored; None: to compute

    def training_step(self, batch: Batch) -> torch.Tensor:
        x, y = self.with_views(batch)
        return supervised_contrastive_loss(projections(self.model, x), y, self.temperature)

    def after_step(self) -> None:
        super().after_step()
        self.class_means = None  # the network has moved: the next prediction computes them again

    def stored_class_means(self) -> torch.Tensor:
        """Per class, the normalized sum of the normalized features of its stored samples (over
        every worker's buffer on data-parallel settings); NaN rows for classes none holds."""
        device = next(self.model.parameters()).device
        classes = self.run.num_classes
        sums = torch.zeros(classes, self.model.feature_dim, device=device)
        counts = torch.zeros(classes, device=device)
        if len(self.replay):
            stored = self.replay.stored()
            with evaluating(self.model) as model:
                for start in range(0, len(stored["y"]), 1024):
                    x = stored["x"][start : start + 1024].to(device)
                    chunk_sums, chunk_counts = class_feature_sums(model.features(x), stored["y"][start : start + 1024],
                                                                  classes)
                    sums += chunk_sums
                    counts += chunk_counts
        self.run.workers.sum(sums, counts)
        return class_means_from_sums(sums, counts)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """Nearest-class-mean scores (the means computed at the first prediction after the
        network last moved); while nothing is stored, every class scores 0."""
        if self.class_means is None:
            self.class_means = self.stored_class_means()
        if bool(torch.isnan(self.class_means).all()):
            return self.mask_to_tasks(torch.zeros(len(x), self.run.num_classes, device=x.device), task_labels)
        return self.mask_to_tasks(nearest_mean_scores(self.model.features(x), self.class_means), task_labels)
