"""`hat`: hard attention to the task (Serrà, Surís, Miron & Karatzoglou, "Overcoming Catastrophic
Forgetting with Hard Attention to the Task", ICML 2018). Written from the paper and the authors'
code (joansj/hat: `approaches/hat.py`, `networks/*_hat.py`).

How it follows its paper, and what it adds: docs/method-notes.md, section hat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from sylvan.errors import ConfigurationError
from sylvan.methods.core.supervised import Batch, SupervisedMethod
from sylvan.methods.parts.gated_network import GatedNetwork, gated_layers
from sylvan.settings.base import Setting
from sylvan.settings.task_incremental import TaskIncrementalSetting


@dataclass
class HAT(SupervisedMethod):
    """Hard attention to the task: per-task gates on every unit, learned with the weights; later
    tasks' gradients are kept off the weights of the units earlier tasks use."""

    name: ClassVar[str] = "hat"
    target_setting: ClassVar[type[Setting]] = TaskIncrementalSetting
    # the embeddings and cumulative gates are the network's, the tasks trained the learner's; the rest lives in a fit
    checkpoint_complete: ClassVar[bool] = True

    lr: float = 0.05  # learning rate (the authors')
    smax: float = 400.0  # s_max: the gates' scale at test time and at the end of each epoch's annealing
    mask_penalty: float = 0.75  # c: weight of the penalty on the share of the free units a task's gates take
    clip_grad: float = 10_000.0  # the gradient's norm is clipped to this (the authors')

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "smax")
        self.require_at_least(0, "mask_penalty")
        self.require_at_least(0, "clip_grad", strict=True)
        self.require_plain_sgd(
            "the weights hat protects",
            "Adam's per-weight scaling would undo the conditioning of the gradients of the weights earlier tasks use",
        )

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        name = self.backbone_name(setting)
        self.check_backbone(setting, lambda backbone, _: gated_layers(backbone, setting.input_shape, name))

    def build_model(self) -> nn.Module:
        setting = self.run
        backbone = super().build_model()
        layers, self.output_layer = gated_layers(backbone, setting.input_shape, self.backbone_name(setting))
        return GatedNetwork(backbone, layers, setting.nb_tasks)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self._factors: list[tuple[nn.Parameter, torch.Tensor]] = []  # gradient multipliers of this stage
        self._batches = 1  # batches per epoch of the stage under way
        self._step = 0  # steps taken in it
        self._scale = self.smax

    # ----- training ------------------------------------------------------------------------------

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        try:
            self._batches = len(train_data)
        except TypeError:
            raise ConfigurationError("hat anneals its gates over each epoch's batches, so it needs training data "
                                     "of known length") from None
        self._step = 0
        self.learner.to(self.run.device)  # where the factors and held rows must be
        self._factors = self.gradient_factors()
        earlier = self.trained_tasks
        self.held.hold(self.earlier_output_rows())
        try:
            self.train_learner(train_data, val_data)
        finally:
            self.held.release()
        self.record_stage(earlier)

    @property
    def trained_tasks(self) -> torch.Tensor:
        """The task labels the training batches have brought so far (between stages: those of the
        finished stages), from the learner's record of them, which its checkpoint keeps."""
        return self.learner.seen_task_classes().any(1).cpu()

    @property
    def trained_classes(self) -> torch.Tensor:
        """The classes the training batches have brought so far."""
        return self.learner.seen_task_classes().any(0).cpu()

    def scale_at(self, step: int) -> float:
        """s at the `step`-th training step of the stage: annealed over each epoch's batches."""
        position = (step % self._batches) / max(self._batches - 1, 1)
        return 1 / self.smax + (self.smax - 1 / self.smax) * position

    def training_step(self, batch: Batch) -> torch.Tensor:
        if batch.t is None:
            raise ValueError("hat needs task labels in every training batch")
        self._scale = self.scale_at(self._step)
        self._step += 1
        logits = self.model(batch.x, batch.t, self._scale)
        loss = self.task_cross_entropy(logits, batch)
        if self.mask_penalty:
            loss = loss + self.mask_penalty * self.model.attention_penalty(batch.t.unique(), self._scale)
        return loss

    def predict(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        return super().predict(x, self.model.checked_task_labels(task_labels))  # from outside the run: checked

    def gradient_factors(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        return self.model.gradient_factors()

    def earlier_output_rows(self) -> dict[nn.Parameter, torch.Tensor]:
        """The output layer's weights of the classes earlier stages trained (held this stage)."""
        trained = self.trained_classes
        if not bool(trained.any()):
            return {}
        layer = self.model.backbone.get_submodule(self.output_layer)
        rows = trained.to(layer.weight.device)
        return {p: rows.view(-1, *([1] * (p.dim() - 1))).expand_as(p) for p in layer.parameters()}

    def after_backward(self) -> None:
        for parameter, factor in self._factors:
            if parameter.grad is not None:
                parameter.grad.mul_(factor)
        self.model.compensate_embedding_gradients(self._scale, self.smax)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)

    def after_step(self) -> None:
        self.model.clamp_embeddings()

    def record_stage(self, earlier: torch.Tensor) -> None:
        """At a stage's end: the cumulative gates take in the gates, at s_max, of the tasks it
        trained first (not among `earlier`, the tasks trained before it)."""
        new = self.trained_tasks & ~earlier
        if bool(new.any()):
            self.model.take_gates(new.nonzero().flatten(), self.smax)

    # ----- evaluation ----------------------------------------------------------------------------

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        if task_labels is None:
            raise ValueError("hat needs task labels at test time, to choose the gates of each task")
        return self.mask_to_tasks(self.model(x, task_labels, self.smax), task_labels)
