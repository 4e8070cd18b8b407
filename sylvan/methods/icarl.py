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
from torch.utils.data import DataLoader, TensorDataset

from sylvan.buffers import make_buffer
from sylvan.errors import ConfigurationError
from sylvan.methods.distillation import DistillationMethod
from sylvan.methods.supervised import Batch, dataset_tensors, evaluating
from sylvan.minibatches import minibatch_loader
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


@dataclass
class ICaRL(DistillationMethod):
    """iCaRL. Needs task boundaries: exemplars are chosen, and the teacher frozen, at the end of
    each task."""

    name: ClassVar[str] = "icarl"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.1  # learning rate
    buffer_size: int = 200  # K: exemplars in total, shared equally among the classes seen
    feature_batch_size: int = 1024  # samples per forward pass when computing features

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "buffer_size", "feature_batch_size")

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        if self.buffer_size < setting.num_classes:
            raise ConfigurationError(
                f"icarl keeps at least one exemplar per class: --buffer_size {self.buffer_size} is less "
                f"than the {setting.num_classes} classes of {setting.dataset}"
            )

    def configure(self, setting: Any) -> None:
        self.validate_for(setting)
        super().configure(setting)
        self.buffer = make_buffer(
            "herding", self.buffer_size, seed=setting.worker_seed(), pixel_fields=self.pixel_fields
        )
        self.class_means: torch.Tensor | None = None  # (classes, dim); NaN rows for classes not stored
        self._task_data: tuple[torch.Tensor, ...] = ()

    # ----- training: the task's data and the exemplars, with distillation -----------------------

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self._task_data = dataset_tensors(train_data.dataset)
        columns = self._task_data
        if len(self.buffer):
            stored = self.buffer.get_all()
            names = ["x", "y", "t"][: len(columns)]
            columns = tuple(torch.cat([c, stored[n].to(c.device)]) for c, n in zip(columns, names))
        generator = torch.Generator().manual_seed(self.setting.seed * 1000 + 500 + self.buffer.seen)
        loader = minibatch_loader(TensorDataset(*columns), train_data.batch_size, shuffle=True, generator=generator,
                                  pin_memory=self.setting.pins_batches)
        self.class_means = None
        self.train_learner(loader, val_data)

    def training_step(self, batch: Batch) -> torch.Tensor:
        active, old = self.observe_classes(batch)
        logits = self.learner(batch.x)
        targets = F.one_hot(batch.y, logits.shape[1]).to(logits.dtype)
        teacher = self.teacher_logits(batch.x)
        if teacher is not None:
            targets[:, old] = torch.sigmoid(teacher[:, old])
        return F.binary_cross_entropy_with_logits(logits[:, active], targets[:, active])

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        self.update_exemplars(*self._task_data)
        self._task_data = ()
        self.class_means = self.exemplar_means()

    # ----- exemplars and the nearest-mean-of-exemplars classifier ------------------------------

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalized features of `x` (evaluation mode, no gradient), on the CPU."""
        device = next(self.model.parameters()).device
        out = []
        with evaluating(self.model) as model:
            for start in range(0, len(x), self.feature_batch_size):
                chunk = x[start : start + self.feature_batch_size].to(device)
                out.append(F.normalize(model.features(chunk).flatten(1), dim=1).cpu())
        return torch.cat(out)

    def update_exemplars(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None = None) -> None:
        """Offer the task's samples, with their features under the current network, to the
        herding memory: each class keeps the exemplars whose mean best matches its mean."""
        fields = {"x": x, "y": y, "features": self.features(x)}
        if t is not None:
            fields["t"] = t
        self.buffer.add(**fields)

    def exemplar_means(self) -> torch.Tensor:
        """Per class, the normalized mean of its exemplars' normalized features (NaN if none)."""
        stored = self.buffer.get_all()
        features = self.features(stored["x"])
        labels = stored["y"].cpu()
        means = torch.full((self.setting.num_classes, features.shape[1]), float("nan"))
        for label in labels.unique().tolist():
            means[label] = F.normalize(features[labels == label].mean(0), dim=0)
        return means

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """Minus the squared distance to each class's exemplar mean; -inf for classes without
        exemplars. Before the first exemplars exist, the network's outputs."""
        if self.class_means is None:
            return super().scores(x, task_labels)
        features = F.normalize(self.model.features(x).flatten(1), dim=1)
        means = self.class_means.to(features.device)
        distances = torch.cdist(features, torch.nan_to_num(means)).pow(2)
        scores = (-distances).masked_fill(torch.isnan(means).any(1), float("-inf"))
        return self.mask_to_tasks(scores, task_labels)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "buffer": self.buffer.state_dict(), "class_means": self.class_means}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"])
        self.class_means = state["class_means"]
