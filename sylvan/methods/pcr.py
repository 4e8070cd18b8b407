"""`pcr`: proxy-based contrastive replay (Lin et al., "PCR: Proxy-based Contrastive Replay for
Online Class-Incremental Continual Learning", CVPR 2023).

Experience replay's cross-entropy pulls every sample towards its class's proxy (its weight vector
in the classifier) and pushes it from every other class's, the old classes' included, which the
stream's new samples far outnumber. Contrastive replay (`scr`) compares samples with samples and
keeps the classes balanced, but needs a nearest-class-mean classifier. PCR contrasts each sample
with proxies, as the cross-entropy does, but only with the proxies of the classes in its step's
batch, each counted as often as its class has samples there.

Each minibatch of b new samples is joined by r samples drawn from a reservoir buffer, and the
b + r by a random view of each (`ContrastiveViews`; the authors' code draws the same recipe with
torchvision, per sample). The classifier is cosine-normalized without bias, cos(w_c, f) / T
(`CosineClassifier` of scale 1 / T), and the 2(b + r) samples learn by the proxy-based
contrastive loss on those logits (`proxy_contrastive_loss`), which trains the features and the
proxies together. Predictions are the same cosine logits over every class.

Defaults: the authors' (lr 0.1, r 10, T 0.09, batch 10). Two differences from their code: the
step's first minibatch, with nothing stored, trains on its own two views (their code skips it),
and the minibatch's and the replay's inputs go through the network in one pass (theirs makes
one pass for each, which differs only where batch normalization sees the batch). Needs no task
boundaries.
"""

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
