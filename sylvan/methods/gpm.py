"""`gpm`: gradient projection memory (Saha, Garg & Roy, "Gradient Projection Memory for Continual
Learning", ICLR 2021).

How it follows its paper, and what it adds: docs/method-notes.md, section gpm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from sylvan.methods.core.supervised import SupervisedMethod, dataset_tensors
from sylvan.methods.parts.gradient_projection import grown_bases, projected_layers, representation_grams
from sylvan.methods.parts.held_weights import batch_norm_statistics_held
from sylvan.methods.parts.layer_calls import forward_order
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting

REPRESENTATION_SEED = 40_009  # offset of the run's seed for the samples each task's bases come from


@dataclass
class GPM(SupervisedMethod):
    """Gradient projection memory: each task's gradients projected out of the input spaces that
    carried the earlier tasks' activations."""

    name: ClassVar[str] = "gpm"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.01  # learning rate (the paper's on permuted MNIST)
    threshold: float = 0.99  # share of a task's input energy each hidden layer's memory keeps
    input_threshold: float = 0.95  # the same for layers that read the network's input
    threshold_increment: float = 0.0  # added to both thresholds per finished task (the paper's CIFAR: 0.003)
    representation_samples: int = 300  # samples of a task its bases are computed from

    state_attributes: ClassVar[tuple[str, ...]] = ("bases", "old_classes", "tasks_done")

    def validate(self) -> None:
        super().validate()
        self.require_in(0, 1, "threshold", "input_threshold", low_open=True)
        self.require_at_least(0, "threshold_increment")
        self.require_at_least(1, "representation_samples")
        self.require_plain_sgd("the weights along the directions gpm protects")

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda backbone, _: projected_layers(backbone))

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.layers = layers = projected_layers(self.model)
        self.layer_order = forward_order(self.model, layers, run.input_shape)
        output = layers[self.layer_order[-1]]
        # the output layer's rows of classes no finished task had train freely, as task-specific heads do
        self.rows_by_class = getattr(output, "out_features", None) == run.num_classes
        self.old_classes = torch.zeros(run.num_classes, dtype=torch.bool)  # classes of finished tasks
        self.bases: dict[str, torch.Tensor] = {}  # orthonormal columns over each layer's input space
        self.tasks_done = 0
        self._task_data: tuple[torch.Tensor, ...] = ()

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self._task_data = dataset_tensors(train_data.dataset)
        if self.tasks_done == 0:
            super().fit(train_data, val_data)
            return
        self.held.hold(self.held_after_first_task())
        try:
            with batch_norm_statistics_held(self.model):
                super().fit(train_data, val_data)
        finally:
            self.held.release()

    def held_after_first_task(self) -> dict[nn.Parameter, torch.Tensor]:
        """Every parameter of one dimension, whole, but the output layer's bias of classes no
        finished task had."""
        output_bias = getattr(dict(self.model.named_modules())[self.layer_order[-1]], "bias", None)
        return {
            p: self.old_classes.clone() if p is output_bias and self.rows_by_class
            else torch.ones_like(p, dtype=torch.bool)
            for p in self.model.parameters() if p.dim() == 1
        }

    def after_backward(self) -> None:
        """Project every weight matrix's gradient out of its layer's memory (of the output
        layer, the rows of classes a finished task had)."""
        super().after_backward()
        for name, bases in self.bases.items():
            weight = self.layers[name].weight
            if weight.grad is None:
                continue
            if bases.device != weight.device:  # kept in float32 (a float16 copy would lose orthonormality)
                bases = self.bases[name] = bases.to(weight.device)
            bases = bases.to(weight.grad.dtype)
            gradient = weight.grad.view(weight.shape[0], -1)
            if name == self.layer_order[-1] and self.rows_by_class:
                rows = self.old_classes.to(gradient.device).to(gradient.dtype)[:, None]
                gradient.sub_(rows * ((gradient @ bases) @ bases.T))
            else:
                gradient.sub_((gradient @ bases) @ bases.T)

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        x, y = self._task_data[0], self._task_data[1]
        self._task_data = ()
        self.old_classes[y.unique()] = True
        generator = torch.Generator().manual_seed(self.run.seed * 1000 + REPRESENTATION_SEED + self.tasks_done)
        chosen = torch.randperm(len(x), generator=generator)[: self.representation_samples]
        grams = representation_grams(self.model, self.layers, x[chosen])
        increment = self.threshold_increment * self.tasks_done
        for name, gram in grams.items():
            threshold = min(1.0, (self.input_threshold if name == self.layer_order[0] else self.threshold) + increment)
            bases = self.bases.get(name)
            grown = grown_bases(None if bases is None else bases.to(torch.float64).cpu(), gram, threshold)
            if grown is not None:
                self.bases[name] = grown.to(torch.float32)
        self.tasks_done += 1

