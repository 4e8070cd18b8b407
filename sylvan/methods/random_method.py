"""`random`: uniform random scores. Chance level, and the smoke test of every setting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader

from sylvan.methods.core.base import Method
from sylvan.settings.base import Setting


@dataclass
class RandomMethod(Method):
    """Ignores the data; predicts a uniformly random class (or action) for every input."""

    name: ClassVar[str] = "random"
    target_setting: ClassVar[type[Setting]] = Setting
    action_spaces: ClassVar[tuple[str, ...]] = ("discrete", "continuous")

    state_attributes: ClassVar[tuple[str, ...]] = ("generator",)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.num_outputs = run.num_outputs
        # continuous actions (RL): uniform within the bounds, rather than scores to pick from
        self.continuous_actions = getattr(run, "action_bounds", None) is not None
        self.generator = torch.Generator().manual_seed(run.seed)

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        """Nothing to learn."""

    def predict(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.continuous_actions:
            return self.run.uniform_actions(len(x), self.generator)
        return torch.rand(len(x), self.num_outputs, generator=self.generator)
