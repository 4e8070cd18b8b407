"""`icarl`: incremental classifier and representation learning (Rebuffi et al., "iCaRL:
Incremental Classifier and Representation Learning", CVPR 2017).

Three parts: (1) a memory of exemplars per class, selected by herding on the network's features
(the `herding` buffer policy, capacity shared equally among the classes seen); (2) training on
the new task's data together with the exemplars, with a sigmoid (binary cross-entropy) loss whose
targets are one-hot for the new classes and the previous model's outputs for the old ones
(distillation); (3) classification by the nearest mean of exemplars in feature space.
Defaults: Seq-MNIST hyperparameters of Buzzega et al. 2020 (lr 0.1, no weight decay, batch 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from sylvan.methods.core.exemplars import HerdingExemplarMethod
from sylvan.methods.core.supervised import Batch
from sylvan.methods.parts.nearest_mean import class_feature_sums, class_means_from_sums, nearest_mean_scores
from sylvan.methods.parts.teacher import Teacher
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


@dataclass
class ICaRL(HerdingExemplarMethod):
    """iCaRL. Needs task boundaries: exemplars are chosen, and the teacher frozen, at the end of
    each task."""

    name: ClassVar[str] = "icarl"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.1  # learning rate

    state_attributes: ClassVar[tuple[str, ...]] = ("class_means",)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.teacher = self.hold("teacher", lambda: Teacher(lambda: self.model))
        self.class_means: torch.Tensor | None = None  # (classes, dim); NaN rows for classes not stored

    # ----- training: the task's data and the exemplars, with distillation -----------------------

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self.class_means = None
        super().fit(train_data, val_data)

    def training_step(self, batch: Batch) -> torch.Tensor:
        active, old = self.seen_classes.observe(batch.y)
        logits = self.learner(batch.x)
        targets = F.one_hot(batch.y, logits.shape[1]).to(logits.dtype)
        teacher = self.teacher.logits(batch.x)
        if teacher is not None:
            targets[:, old] = torch.sigmoid(teacher[:, old])
        return F.binary_cross_entropy_with_logits(logits[:, active], targets[:, active])

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        self.class_means = self.exemplar_means()

    # ----- the nearest-mean-of-exemplars classifier ---------------------------------------------

    def exemplar_means(self) -> torch.Tensor:
        """Per class, the normalized mean of its exemplars' normalized features (NaN if none)."""
        stored = self.replay.stored()
        return class_means_from_sums(*class_feature_sums(self.features(stored["x"]), stored["y"],
                                                         self.run.num_classes))

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """Minus the squared distance to each class's exemplar mean; -inf for classes without
        exemplars. Before the first exemplars exist, the network's outputs."""
        if self.class_means is None:
            return super().scores(x, task_labels)
        return self.mask_to_tasks(nearest_mean_scores(self.model.features(x), self.class_means), task_labels)
