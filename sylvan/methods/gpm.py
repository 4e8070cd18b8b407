"""`gpm`: gradient projection memory (Saha, Garg & Roy, "Gradient Projection Memory for Continual
Learning", ICLR 2021).

A layer's output on an old task's inputs does not change when its weights move orthogonally to
the space those inputs span. At the end of each task GPM finds, for every linear and convolution
layer, the directions of its input space that carry most of the task's inputs (their "energy"),
and keeps them in a memory of orthonormal bases M_l. Later tasks train on gradients projected out
of that memory, g_l <- g_l - g_l M_l M_l^T, so they leave the old tasks' activations (almost) as
they were.

The bases come from the representation R_l of `--representation_samples` samples of the task
(drawn with the run's seed), one column per sample (for a convolution, per patch it sees): with
the memory's projection P_l = M_l M_l^T, the task's energy already captured is ||P_l R_l||^2 /
||R_l||^2; where it is below the layer's threshold, the left singular vectors of the residual
(I - P_l) R_l join the memory, the largest first, until it reaches the threshold (the paper's
criterion: the fewest that do; the authors' code keeps one fewer on the first task). The
singular values come from R_l R_l^T, accumulated in float64, so a convolution's patches never
form one matrix. The thresholds are the paper's MNIST ones: `--input_threshold` for the layer
that reads the network's input, `--threshold` for the others, each raised by
`--threshold_increment` per finished task (the paper's CIFAR recipe).

Every weight matrix is projected, the output layer's too, there row by row: the rows of classes
some finished task had are projected, those of classes none had train freely, as the authors'
task-specific heads do (so on domain-incremental settings, whose tasks share their classes, the
whole output layer is projected after the first task, as in the authors' permuted MNIST). After
the first task, parameters of one dimension (biases, batch norm's scales and shifts) are held as
they are, but the output bias of classes no finished task had, and batch norm layers normalize
with the running statistics the first task left. The authors' ResNet normalizes with batch
statistics instead; frozen statistics keep an old task's activations exactly, but a deep network
then trains its later tasks unnormalized and takes a smaller lr (on digits, `resnet18_reduced`
diverges at 0.1 and learns at 0.03). SGD only, without weight decay: Adam's per-weight scaling
and a decay would move the weights along the protected directions. Needs task boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from sylvan.methods.core.supervised import SupervisedMethod, dataset_tensors, evaluating
from sylvan.methods.parts.gradient_projection import grown_bases, layer_inputs, projected_layers
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

    def validate(self) -> None:
        super().validate()
        self.require_in(0, 1, "threshold", "input_threshold", low_open=True)
        self.require_at_least(0, "threshold_increment")
        self.require_at_least(1, "representation_samples")
        self.require_plain_sgd("the weights along the directions gpm protects")

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda backbone, _: projected_layers(backbone))

    def configure(self, setting: Any) -> None:
        super().configure(setting)
        self.layers = layers = projected_layers(self.model)
        self.layer_order = forward_order(self.model, layers, setting.input_shape)
        output = layers[self.layer_order[-1]]
        # the output layer's rows of classes no finished task had train freely, as task-specific heads do
        self.rows_by_class = getattr(output, "out_features", None) == setting.num_classes
        self.old_classes = torch.zeros(setting.num_classes, dtype=torch.bool)  # classes of finished tasks
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
        grams = self.representation_grams(x[chosen])
        increment = self.threshold_increment * self.tasks_done
        for name, gram in grams.items():
            threshold = min(1.0, (self.input_threshold if name == self.layer_order[0] else self.threshold) + increment)
            bases = self.bases.get(name)
            grown = grown_bases(None if bases is None else bases.to(torch.float64).cpu(), gram, threshold)
            if grown is not None:
                self.bases[name] = grown.to(torch.float32)
        self.tasks_done += 1

    def representation_grams(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """R_l R_l^T for every projected layer l on the samples `x` (float64, on the CPU), in
        evaluation mode and in chunks."""
        grams: dict[str, torch.Tensor] = {}

        def recorder(name: str, layer: nn.Module):
            def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
                rows = layer_inputs(layer, inputs[0].detach()).to(torch.float64)
                gram = rows.T @ rows
                grams[name] = gram if name not in grams else grams[name] + gram
            return record

        handles = [layer.register_forward_pre_hook(recorder(name, layer)) for name, layer in self.layers.items()]
        device = next(self.model.parameters()).device
        try:
            with evaluating(self.model) as model, torch.no_grad():
                for start in range(0, len(x), 64):
                    model(x[start : start + 64].to(device))
        finally:
            for handle in handles:
                handle.remove()
        return {name: gram.cpu() for name, gram in grams.items()}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "bases": {k: v.cpu() for k, v in self.bases.items()},
                "old_classes": self.old_classes.clone(), "tasks_done": self.tasks_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.bases = dict(state["bases"])
        self.old_classes = state["old_classes"].clone()
        self.tasks_done = state["tasks_done"]

