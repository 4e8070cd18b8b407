"""`stable_sgd`: stable SGD (Mirzadeh, Farajtabar, Pascanu & Ghasemzadeh, "Understanding the Role
of Training Regimes in Continual Learning", NeurIPS 2020).

Plain fine-tuning under a training regime that widens the minima each task ends in: dropout, a
learning rate that decays at every new task (lr_k = lr * lr_decay^k for the k-th task), and small
batches (the paper's batch size is 10: pass `--batch_size 10`). Needs task boundaries. Defaults:
the paper's MNIST hyperparameters (lr 0.1, decay 0.8, dropout 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods.core.supervised import SupervisedMethod
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


def with_dropout(model: nn.Module, p: float) -> nn.Module:
    """`model` with dropout of rate `p` after every ReLU of its feature extractor (an MLP's
    hidden layers) or, for other feature extractors, before its classifier."""
    if p == 0:
        return model
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential) and any(isinstance(m, nn.ReLU) for m in features.children()):
        layers: list[nn.Module] = []
        for module in features.children():
            layers.append(module)
            if isinstance(module, nn.ReLU):
                layers.append(nn.Dropout(p))
        model.features = nn.Sequential(*layers)
    elif hasattr(model, "classifier"):
        model.classifier = nn.Sequential(nn.Dropout(p), model.classifier)
    else:
        raise ConfigurationError("stable_sgd needs a backbone with `features` and `classifier` modules")
    return model


@dataclass
class StableSGD(SupervisedMethod):
    """Fine-tuning with dropout and a per-task learning-rate decay."""

    name: ClassVar[str] = "stable_sgd"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.1  # learning rate of the first task
    lr_decay: float = 0.8  # factor applied to the learning rate at each new task
    dropout: float = 0.5  # dropout rate of the hidden layers

    state_attributes: ClassVar[tuple[str, ...]] = ("tasks_started",)

    def validate(self) -> None:
        super().validate()
        self.require_in(0, 1, "lr_decay", low_open=True)
        self.require_in(0, 1, "dropout", high_open=True)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.tasks_started = 0

    def build_model(self) -> nn.Module:
        return with_dropout(super().build_model(), self.dropout)

    @property
    def current_lr(self) -> float:
        return self.lr * self.lr_decay ** max(self.tasks_started - 1, 0)

    def on_task_start(self, task_id: int | None) -> None:
        super().on_task_start(task_id)
        self.tasks_started += 1
