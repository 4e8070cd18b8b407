"""A replay method written outside sylvan, with a store and a part of its own classes: for the
cost accounting's tests (what a plugin's method holds counts as a built-in one's does)."""

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from sylvan.methods import Batch, Naive


class SampleStore:
    """A plain class of the plugin's: the last `size` inputs and labels seen."""

    def __init__(self, size: int, input_shape: tuple[int, ...]) -> None:
        self.x = torch.zeros(size, *input_shape)
        self.y = torch.zeros(size, dtype=torch.long)
        self.seen = 0

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        for row_x, row_y in zip(x, y):
            self.x[self.seen % len(self.x)] = row_x.detach().cpu()
            self.y[self.seen % len(self.y)] = row_y.cpu()
            self.seen += 1


@dataclass
class ReplayOutside(Naive):
    """Fine-tuning plus a loss on a store of the latest samples."""

    name: ClassVar[str] = "replay_outside"

    store_size: int = 50  # samples stored

    def configure(self, run):
        super().configure(run)
        self.store = SampleStore(self.store_size, tuple(run.input_shape))

    def training_step(self, batch: Batch) -> torch.Tensor:
        loss = super().training_step(batch)
        if self.store.seen:
            filled = min(self.store.seen, len(self.store.x))
            x, y = self.store.x[:filled].clone().to(batch.x.device), self.store.y[:filled].clone().to(batch.x.device)
            loss = loss + F.cross_entropy(self.learner(x), y)
        self.store.add(batch.x, batch.y)
        return loss
