"""`lucir`: learning a unified classifier incrementally via rebalancing (Hou et al., "Learning a
Unified Classifier Incrementally via Rebalancing", CVPR 2019).

How it follows its paper, and what it adds: docs/method-notes.md, section lucir."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from sylvan.methods.core.exemplars import HerdingExemplarMethod
from sylvan.methods.core.supervised import Batch, dataset_tensors
from sylvan.methods.parts.cosine_classes import cosine_network, imprint, margin_ranking_loss
from sylvan.methods.parts.held_weights import batch_norm_statistics_held
from sylvan.methods.parts.teacher import Teacher
from sylvan.models.cosine import CosineClassifier
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


@dataclass
class LUCIR(HerdingExemplarMethod):
    """LUCIR: a cosine classifier with imprinted new classes, feature distillation (less-forget
    constraint) and a margin between old classes' exemplars and the new classes."""

    name: ClassVar[str] = "lucir"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.1  # learning rate
    lambda_base: float = 5.0  # weight of the less-forget constraint, times sqrt(old classes / new classes)
    margin: float = 0.5  # m: the margin of the inter-class separation
    hard_negatives: int = 2  # K: the new classes each old exemplar is kept apart from (the highest cosines)
    margin_weight: float = 1.0  # weight of the inter-class separation
    imprint: bool = True  # start a new class's weights at the mean direction of its samples' features
    last_relu: bool = False  # keep the features' last ReLU (the paper removes it)
    finetune_epochs: int = 0  # class-balanced finetuning of the classifier on the exemplars after each task
    finetune_lr: float = 0.01  # learning rate of the class-balanced finetuning

    checkpoint_complete = True  # the teacher, classes and exemplars are the bases'; the rest lives within a fit

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "lambda_base", "margin", "margin_weight", "finetune_epochs")
        self.require_at_least(1, "hard_negatives")
        self.require_at_least(0, "finetune_lr", strict=True)

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda backbone, name: cosine_network(backbone, name, setting.num_classes,
                                                                          self.last_relu, self.name))

    def build_model(self) -> nn.Module:
        return cosine_network(super().build_model(), self.backbone_name(self.run), self.run.num_classes, self.last_relu,
                              self.name)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.teacher = self.hold("teacher", lambda: Teacher(lambda: self.model))
        self._finetuning = False

    @property
    def classifier(self) -> CosineClassifier:
        return self.model.classifier

    @property
    def current_lr(self) -> float:
        return self.finetune_lr if self._finetuning else self.lr

    # ----- training --------------------------------------------------------------------------

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self._task_data = dataset_tensors(train_data.dataset)
        if self.teacher.network is not None and self.imprint:
            self.imprint_weights(self._task_data[0], self._task_data[1])
        weight = self.classifier.weight
        self.held.hold({weight: self.seen_classes.old.to(weight.device)[:, None].expand_as(weight)})
        try:
            self.train_learner(self.with_exemplars(self._task_data, train_data.batch_size), val_data)
        finally:
            self.held.release()

    def imprint_weights(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Start each new class's weights at its samples' mean feature direction (`imprint`)."""
        imprint(self.classifier.weight, self.features(x), y.cpu(), self.seen_classes.old)

    def training_step(self, batch: Batch) -> torch.Tensor:
        active, old = self.seen_classes.observe(batch.y)
        features = self.model.features(batch.x).flatten(1)
        cosine = self.classifier.cosine(features)
        classification = F.cross_entropy((self.classifier.sigma * cosine).masked_fill(~active, float("-inf")), batch.y)
        new = active & ~old
        if self.teacher.network is None or self._finetuning or not bool(new.any()):
            return classification
        self.teacher.network.to(batch.x.device)
        with torch.no_grad():
            teacher_features = self.teacher.network.features(batch.x).flatten(1)
        share = math.sqrt(float(old.sum()) / float(new.sum()))
        less_forget = (1 - F.cosine_similarity(features, teacher_features.to(features.dtype), dim=1)).mean()
        return (classification + self.lambda_base * share * less_forget
                + self.margin_weight * margin_ranking_loss(cosine, batch.y, old, new, self.margin, self.hard_negatives))

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)  # the teacher, the old classes, the exemplars
        if self.finetune_epochs:
            self.finetune_on_exemplars()

    def finetune_on_exemplars(self) -> None:
        """Class-balanced finetuning: the classifier alone, on the exemplars, by cross-entropy."""
        self.held.hold({p: torch.ones_like(p, dtype=torch.bool) for p in self.model.features.parameters()})
        self._finetuning = True
        try:
            stored = self.replay.stored()
            columns = tuple(stored[name] for name in ("x", "y", "t") if name in stored)
            loader = self.with_exemplars(columns, self.run.batch_size, exemplars={})
            with batch_norm_statistics_held(self.model):  # as the task left them
                self.train_learner(loader, epochs=self.finetune_epochs, measure_online=False)
        finally:
            self._finetuning = False
            self.held.release()

    # ----- evaluation ------------------------------------------------------------------------

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """The classifier's scores over the classes seen so far (-inf for the others)."""
        return self.mask_to_tasks(self.seen_classes.only_seen(self.learner(x)), task_labels)
