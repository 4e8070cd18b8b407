"""The data of one task of a stream as a run receives it from its setting: a value the run
trains on and evaluates, whatever made it (a dataset read through continuum, a dataset stream,
generated tensors). The run imports it from here, so that it knows no setting."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset


@dataclass
class TaskData:
    """One task of a stream: its training and test tensors, and the labels it contains.

    Inputs are float32, or uint8 pixels (0 to 255 standing for [0, 1]) where the dataset is made
    of uint8 images: the loaders and the evaluation turn them into float32 per minibatch
    (`sylvan.minibatches.float_inputs`), so a method always receives float inputs."""

    task_id: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[int]

    def train_dataset(self, with_task_labels: bool, order: torch.Tensor | None = None) -> TensorDataset:
        """The training set as the method sees it: (x, y), or (x, y, t) where task labels are
        allowed. `order` optionally fixes the order of the samples (online streams)."""
        x, y = (self.x_train, self.y_train) if order is None else (self.x_train[order], self.y_train[order])
        if with_task_labels:
            return TensorDataset(x, y, torch.full_like(y, self.task_id))
        return TensorDataset(x, y)
