"""`lucir`: learning a unified classifier incrementally via rebalancing (Hou et al., "Learning a
Unified Classifier Incrementally via Rebalancing", CVPR 2019).

A network trained on a new task and a few exemplars of the old ones favours the new classes. LUCIR
counters it in three ways, on top of iCaRL's herding exemplars:

1. Cosine normalization: the classifier scores sigma * cos(w_c, f) (`CosineClassifier`), without
   bias, on features that end before their last ReLU, so that no class wins by the size of its
   weights; a new class's weight vector starts at the mean direction of its samples' features
   (imprinting), scaled to the old classes' mean norm. The old classes' weight vectors stay as
   they are while a new task trains.
2. Less-forget constraint: lambda * (1 - cos(f, f*)) on every sample, f* the features of the
   network as the previous task left it; lambda = `lambda_base` * sqrt(old classes / new classes).
3. Inter-class separation: for each exemplar of an old class, a margin ranking loss between the
   cosine of its class and the K highest cosines of new classes, max(0, m - cos_gt + cos_k).

The cross-entropy is over the classes seen so far, and predictions come from the classifier over
those classes. With `finetune_epochs`, each task ends with class-balanced finetuning: the classifier
alone trains on the exemplars (an equal number per class), by cross-entropy, at `finetune_lr`.
Needs task boundaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from sylvan.errors import ConfigurationError
from sylvan.methods.core.exemplars import HerdingExemplarMethod
from sylvan.methods.core.supervised import Batch, dataset_tensors
from sylvan.methods.parts.held_weights import batch_norm_statistics_held
from sylvan.methods.parts.teacher import Teacher
from sylvan.models.cosine import CosineClassifier, remove_last_relu
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
        self.check_backbone(setting, lambda backbone, name: self.cosine_network(backbone, name, setting))

    def cosine_network(self, model: nn.Module, name: str, setting: Any) -> nn.Module:
        """`model` with a cosine classifier over its features, which end before their last ReLU
        unless `last_relu`; a `ConfigurationError` for a network without `features` and
        `feature_dim`, or whose last ReLU cannot be found."""
        self.require_feature_layers(model, name, "replaces the classifier over the backbone's features")
        if not self.last_relu and not remove_last_relu(model.features):
            raise ConfigurationError(
                f"lucir found no last ReLU to remove in {name}'s features; --last_relu true keeps the features as "
                "they are"
            )
        model.classifier = CosineClassifier(model.feature_dim, setting.num_classes)
        return model

    def build_model(self) -> nn.Module:
        return self.cosine_network(super().build_model(), self.backbone_name(self.run), self.run)

    def configure(self, setting: Any) -> None:
        super().configure(setting)
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
        """Set each new class's weight vector to the normalized mean of its samples' normalized
        features under the network as it is, times the mean norm of the old classes' vectors."""
        features = self.features(x)
        labels = y.cpu()
        old = self.seen_classes.old
        with torch.no_grad():
            weight = self.classifier.weight
            norm = weight[old.to(weight.device)].norm(dim=1).mean()
            for label in labels.unique().tolist():
                if not bool(old[label]):
                    direction = F.normalize(features[labels == label].mean(0), dim=0)
                    weight[label] = direction.to(weight.device, weight.dtype) * norm

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
                + self.margin_weight * self.separation(cosine, batch.y, old, new))

    def separation(self, cosine: torch.Tensor, y: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """The margin ranking loss of the old classes' samples in the batch: the mean over them and
        their K hardest new classes of max(0, margin - cos(own class) + cos(new class))."""
        of_old = old[y]
        if not bool(of_old.any()):
            return cosine.new_zeros(())
        own = cosine[of_old].gather(1, y[of_old][:, None])
        k = min(self.hard_negatives, int(new.sum()))
        hardest = cosine[of_old][:, new].topk(k, dim=1).values
        return F.relu(self.margin - own + hardest).mean()

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)  # the teacher, the old classes, the exemplars
        if self.finetune_epochs:
            self.finetune_on_exemplars()

    def finetune_on_exemplars(self) -> None:
        """Class-balanced finetuning: the classifier alone, on the exemplars, by cross-entropy."""
        self.held.hold({p: torch.ones_like(p, dtype=torch.bool) for p in self.model.features.parameters()})
        self._finetuning = True
        try:
            stored = self.buffer.get_all()
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
        scores = self.learner(x)
        seen = self.seen_classes.active.to(scores.device)
        if bool(seen.any()):
            scores = scores.masked_fill(~seen, float("-inf"))
        return self.mask_to_tasks(scores, task_labels)
