"""Base of the policies that balance the buffer over classes: they count, per label, the
samples seen so far (the label field is "y" by default)."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from sylvan.buffers.base import RehearsalBuffer


class ClassAwareBuffer(RehearsalBuffer):
    """Keeps `class_seen[c]`, the number of samples of label c offered so far."""

    label_field = "y"

    def __init__(self, capacity: int, device: torch.device | str | None = None, seed: int = 0) -> None:
        super().__init__(capacity, device=device, seed=seed)
        self.class_seen = torch.zeros(0, dtype=torch.long)

    def _count_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Add the batch's labels to `class_seen`; return the counts before this batch."""
        labels = labels.detach().long().cpu()
        if labels.numel() and int(labels.min()) < 0:
            raise ValueError("class-aware buffers need labels >= 0")
        size = max(len(self.class_seen), int(labels.max()) + 1 if labels.numel() else 0)
        before = torch.zeros(size, dtype=torch.long)
        before[: len(self.class_seen)] = self.class_seen
        self.class_seen = before + torch.bincount(labels, minlength=size)
        return before

    def stored_per_class(self) -> torch.Tensor:
        """Stored samples per label, as a tensor aligned with `class_seen`."""
        stored = self.storage[self.label_field][: self.size].long().cpu() if self.storage else torch.zeros(0)
        return torch.bincount(stored.long(), minlength=len(self.class_seen))[: len(self.class_seen)]

    def _extra_state(self) -> dict[str, Any]:
        return {"class_seen": self.class_seen.clone()}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.class_seen = state["class_seen"].clone()
