"""What the exemplar-based methods (`icarl`, `bic`, `wa`, `lucir`, `ssil`, `il2m`, `eeil`) share: a memory of
exemplars per class, chosen by herding on the network's features at the end of each task (the
`herding` buffer policy, its capacity shared equally among the classes seen), the task's data kept
from `fit` to that choice, and training on the task's data together with the stored exemplars.
The distillation methods among them hold a teacher too (`sylvan.methods.parts.teacher`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sylvan.buffers import make_buffer
from sylvan.buffers.channel import LocalReplay
from sylvan.errors import ConfigurationError
from sylvan.methods.core.supervised import SupervisedMethod, dataset_tensors, evaluating
from sylvan.methods.parts.seen_classes import SeenClasses

EXEMPLAR_ORDER_SEED = 500  # offset of the run's seed for the order the task's data and exemplars are trained in


def pick_per_class(y: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """A boolean mask over the labels `y` choosing `count` samples of each class at random (all
    of a class that has fewer): a class-balanced part of a task's data (`bic`'s validation
    part, `eeil`'s balanced finetuning)."""
    picked = torch.zeros(len(y), dtype=torch.bool)
    for label in y.unique().tolist():
        members = torch.nonzero(y == label).flatten()
        picked[members[torch.randperm(len(members), generator=generator)[:count]]] = True
    return picked


@dataclass
class HerdingExemplarMethod(SupervisedMethod):
    """A method with a herding memory of `buffer_size` exemplars in total."""

    buffer_size: int = 200  # K: exemplars in total, shared equally among the classes seen
    feature_batch_size: int = 1024  # samples per forward pass when computing features

    state_attributes: ClassVar[tuple[str, ...]] = ("buffer",)

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "buffer_size", "feature_batch_size")

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        if self.buffer_size < setting.num_classes:
            raise ConfigurationError(
                f"{self.name} keeps at least one exemplar per class: --buffer_size {self.buffer_size} is less "
                f"than the {setting.num_classes} classes of {setting.dataset}"
            )

    def configure(self, run: Any) -> None:
        self.validate_for(run)
        super().configure(run)
        self.seen_classes = self.hold("seen_classes", lambda: SeenClasses(self.run.num_classes))
        self.buffer = make_buffer(
            "herding", self.buffer_size, seed=self.run.workers.seed(), pixel_fields=self.pixel_fields
        )
        self.replay = LocalReplay(self.buffer)  # each worker's exemplars, chosen from its own shard
        self._task_data: tuple[torch.Tensor, ...] = ()

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self._task_data = dataset_tensors(train_data.dataset)
        self.train_learner(self.with_exemplars(self._task_data, train_data.batch_size), val_data)

    def with_exemplars(
        self, columns: tuple[torch.Tensor, ...], batch_size: int, exemplars: dict[str, torch.Tensor] | None = None,
    ) -> DataLoader:
        """A shuffled loader of `columns` (x, y[, t]) joined by `exemplars` (default: every stored
        exemplar), in an order drawn with the run's seed."""
        stored = self.replay.stored() if exemplars is None and len(self.replay) else exemplars
        if stored:
            names = ["x", "y", "t"][: len(columns)]
            columns = tuple(torch.cat([c, stored[n].to(c.device)]) for c, n in zip(columns, names))
        return self.run.loader(TensorDataset(*columns), batch_size, seed_offset=EXEMPLAR_ORDER_SEED + self.replay.seen)

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        self.update_exemplars(*self._task_data)
        self._task_data = ()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalized features of `x` (evaluation mode, no gradient), on the CPU."""
        return self.evaluated_in_chunks(
            x, lambda model, chunk: F.normalize(model.features(chunk).flatten(1), dim=1).cpu()
        )

    def evaluated_in_chunks(
        self, x: torch.Tensor, function: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """`function(model, chunk)` over `x` in chunks of `feature_batch_size` moved to the model's
        device, the model in evaluation mode without gradients; the results joined."""
        device = next(self.model.parameters()).device
        with evaluating(self.model) as model:
            return torch.cat([function(model, x[start : start + self.feature_batch_size].to(device))
                              for start in range(0, len(x), self.feature_batch_size)])

    def update_exemplars(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None = None) -> None:
        """Offer the task's samples, with their features under the current network, to the
        herding memory: each class keeps the exemplars whose mean best matches its mean."""
        fields = {"x": x, "y": y, "features": self.features(x)}
        if t is not None:
            fields["t"] = t
        self.replay.insert(fields)
