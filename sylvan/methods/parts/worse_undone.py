"""Fine-tuning undone where it made a network worse on the samples it was tuned on: a network
copied from another (an expert from the trunk) and trained on a shard of the data should fit that
shard at least as well as the copy it started as. An expert of a hard mixture trained on a shard of
a few confusable classes (2, 3, 5 and 8 of MNIST, a 16-unit network) can end recognizing one of
them far worse than the trunk did (22% of the 3s against 93%), and since every test sample of that
class goes to it, the mixture loses the class."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from sylvan.methods.parts.knn_transfer import accuracy_among_classes


@contextmanager
def undone_where_worse(trained: nn.Module, network: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Iterator[None]:
    """Train `trained` (modules of `network`) in the body; then, where `network` is less accurate
    on (`x`, `y`), the samples it was trained on, than before, put `trained` back as it was. With
    several workers, the worker that trained it decides, and the weights it keeps are the ones
    copied to the others."""
    started = {name: value.detach().clone() for name, value in trained.state_dict().items()}
    before = accuracy_among_classes(network, x, y)
    yield
    if accuracy_among_classes(network, x, y) < before:
        trained.load_state_dict(started)
