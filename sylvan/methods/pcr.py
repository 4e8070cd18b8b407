"""`pcr`: proxy-based contrastive replay (Lin et al., "PCR: Proxy-based Contrastive Replay for
Online Class-Incremental Continual Learning", CVPR 2023).

How it follows its paper, and what it adds: docs/method-notes.md, section pcr."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from sylvan.methods.core.contrastive_replay import ContrastiveReplayMethod
from sylvan.methods.core.supervised import Batch
from sylvan.methods.parts.contrastive import proxy_contrastive_loss
from sylvan.models.cosine import CosineClassifier
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting


@dataclass
class PCR(ContrastiveReplayMethod):
    """PCR: each sample and a random view of it contrasted with the proxies of its batch's classes."""

    name: ClassVar[str] = "pcr"
    target_setting: ClassVar[type[Setting]] = OnlineSetting  # needs no boundaries: runs everywhere
    views_seed: ClassVar[int] = 40_013

    lr: float = 0.1  # learning rate
    replay_size: int = 10  # r: samples replayed with each minibatch (0: as many as the batch size)
    temperature: float = 0.09  # T: the cosine classifier's logits are cos / T

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "temperature", strict=True)

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda backbone, name: self.with_proxies(backbone, name, setting.num_classes))

    def with_proxies(self, model: nn.Module, name: str, num_classes: int) -> nn.Module:
        """`model` with the cosine classifier whose weight vectors are the proxies; a
        `ConfigurationError` for a network without `features` and `feature_dim`."""
        self.require_feature_layers(model, name, "puts a cosine classifier on the backbone's features")
        model.classifier = CosineClassifier(model.feature_dim, num_classes, scale=1.0 / self.temperature)
        return model

    def build_model(self) -> nn.Module:
        return self.with_proxies(super().build_model(), self.backbone_name(self.run), self.run.num_classes)

    def training_step(self, batch: Batch) -> torch.Tensor:
        x, y = self.with_views(batch)
        return proxy_contrastive_loss(self.learner(x), y)
