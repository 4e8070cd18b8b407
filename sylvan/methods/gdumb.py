"""`gdumb`: greedy sampler and dumb learner (Prabhu, Torr & Dokania, "GDumb: A Simple Approach
that Questions Our Progress in Continual Learning", ECCV 2020).

The stream only fills a class-balanced memory (the `gdumb` buffer policy: a new sample is stored
while there is room, or replaces a random sample of a largest class when its own class is below
the largest); nothing is learned from the stream itself. Before each evaluation (at the end of
each `fit`), a fresh network is trained from scratch on the memory alone: SGD with momentum 0.9
and weight decay 1e-6 (or `--optimizer adam`), cosine-annealed from lr to min_lr over the
retraining (`--lr_schedule cosine`, the default here; the paper's SGDR, in one cycle), gradient
norm clipped to 10. Classes absent from memory are never predicted.
Needs no task boundaries. Defaults: the Split-MNIST configuration of the reproduced baselines
(memory 4,400, 10 epochs, batch 16; use `--backbone mlp_400` for the MLP 2x400).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader, TensorDataset

from sylvan.buffers import make_buffer
from sylvan.buffers.channel import LocalReplay
from sylvan.methods.core.supervised import Batch, SupervisedMethod
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting


@dataclass
class GDumb(SupervisedMethod):
    """GDumb: a balanced memory, and a network retrained from scratch on it before evaluation."""

    name: ClassVar[str] = "gdumb"
    target_setting: ClassVar[type[Setting]] = OnlineSetting

    lr: float = 0.05  # learning rate at the start of each retraining
    # learning rate over each retraining: constant, step or cosine (from lr to min_lr)
    lr_schedule: str = "cosine"
    min_lr: float = 0.0005  # cosine: learning rate at the end of each retraining
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 1e-6  # L2 penalty
    buffer_size: int = 4400  # capacity of the class-balanced memory, in samples
    retrain_epochs: int = 10  # epochs over the memory at each retraining
    retrain_batch_size: int = 16  # minibatch size of the retraining
    clip_norm: float = 10.0  # gradient-norm clipping during retraining (0: no clipping)

    state_attributes: ClassVar[tuple[str, ...]] = ("buffer",)

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "buffer_size")
        self.require_at_least(1, "retrain_epochs", "retrain_batch_size")
        self.require_at_least(0, "clip_norm")

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.buffer = make_buffer("gdumb", self.buffer_size, seed=self.run.workers.seed(),
                                  pixel_fields=self.pixel_fields)
        self.memory = LocalReplay(self.buffer)  # each worker's own: it retrains on its memory alone

    def epochs_per_fit(self, setting: Any) -> int:
        return self.retrain_epochs

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        """Store the stream in memory, a step of a loop of its own per batch (where the setting
        measures online accuracy, each batch is scored first), then retrain from scratch on the memory."""
        with self.run.engine.loop(len(train_data), "store", self.run.fit_callbacks()) as loop:
            for batch in train_data:
                with loop.step("store", batch, len(batch[1])):
                    self.memory.insert(Batch(*batch).fields())
        self.retrain(val_data)

    def retrain(self, val_data: DataLoader | None = None) -> None:
        stored = self.memory.stored()
        columns = [stored["x"], stored["y"]] + ([stored["t"]] if "t" in stored else [])
        loader = self.run.loader(TensorDataset(*columns), self.retrain_batch_size, seed_offset=700 + self.memory.seen)
        self.learner = self.build_learner()
        self.train_learner(loader, val_data, epochs=self.retrain_epochs, measure_online=False)

    def after_backward(self) -> None:
        if self.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        scores = super().scores(x, task_labels)
        if len(self.memory):
            stored = torch.zeros(scores.shape[1], dtype=torch.bool)
            stored[torch.tensor(sorted(self.memory.class_counts()))] = True
            scores = scores.masked_fill(~stored.to(scores.device), float("-inf"))
        return scores
