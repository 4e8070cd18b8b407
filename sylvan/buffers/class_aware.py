"""Base of the policies that balance the buffer over classes. They count, per label, the
samples seen so far, and keep a CPU copy of the label of every slot, so that their decisions
need no device round trip (the label field is "y")."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from sylvan.buffers.base import RehearsalBuffer


class ClassAwareBuffer(RehearsalBuffer):
    """Keeps `class_seen[c]` (samples of label c offered so far) and `slot_labels`."""

    label_field = "y"

    def __init__(
        self, capacity: int, device: torch.device | str | None = None, seed: int = 0, retrieval: str = "uniform"
    ) -> None:
        super().__init__(capacity, device=device, seed=seed, retrieval=retrieval)
        self.class_seen = np.zeros(0, dtype=np.int64)
        self.class_stored = np.zeros(0, dtype=np.int64)
        self.slot_labels = np.full(self.capacity, -1, dtype=np.int64)
        # label -> occupied slots holding it; None when it must be rebuilt (after moves)
        self._member_cache: dict[int, np.ndarray] | None = None

    def _labels_of(self, batch: Mapping[str, torch.Tensor]) -> np.ndarray:
        if self.label_field not in batch:
            raise ValueError(f"the {self.policy} policy needs a {self.label_field!r} field in every batch")
        labels = batch[self.label_field].detach().cpu().numpy().astype(np.int64)
        if labels.size and labels.min() < 0:
            raise ValueError(f"the {self.policy} policy needs labels >= 0")
        return labels

    def _count_labels(self, labels: np.ndarray) -> np.ndarray:
        """Add the batch's labels to `class_seen`; return the counts before this batch."""
        size = max(len(self.class_seen), int(labels.max()) + 1 if labels.size else 0)
        before = np.zeros(size, dtype=np.int64)
        before[: len(self.class_seen)] = self.class_seen
        self.class_seen = before + np.bincount(labels, minlength=size)
        if len(self.class_stored) < size:
            self.class_stored = np.concatenate([self.class_stored, np.zeros(size - len(self.class_stored), np.int64)])
        return before

    def stored_per_class(self) -> np.ndarray:
        """Stored samples per label, aligned with `class_seen` (kept up to date on every write,
        move and removal, so reading it costs nothing)."""
        return self.class_stored.copy()

    def members(self, label: int) -> np.ndarray:
        """The occupied slots holding `label`, in slot order unless the cache says otherwise."""
        if self._member_cache is None:
            return np.flatnonzero(self.slot_labels[: self.size] == label)
        return self._member_cache.get(int(label), np.empty(0, dtype=np.int64))

    def build_member_cache(self) -> None:
        """Index the slots of every label at once (one sort), for policies that look up many
        labels per batch; kept up to date by writes that fill empty slots, dropped on moves."""
        labels = self.slot_labels[: self.size]
        order = np.argsort(labels, kind="stable")
        classes, starts = np.unique(labels[order], return_index=True)
        self._member_cache = dict(zip(classes.tolist(), np.split(order, starts[1:])))

    def _random_slots_of(self, label: int, count: int) -> np.ndarray:
        """`count` distinct occupied slots, drawn uniformly among those holding `label`."""
        members = self.members(label)
        return members[self._choose(len(members), count)]

    def _write(self, slots: np.ndarray, positions: np.ndarray, batch: Mapping[str, torch.Tensor]) -> None:
        super()._write(slots, positions, batch)
        size = len(self.class_stored)
        replaced = self.slot_labels[slots]
        new = self._batch_labels[positions]
        self.class_stored += np.bincount(new, minlength=size) - np.bincount(replaced[replaced >= 0], minlength=size)
        self.slot_labels[slots] = new
        changed = replaced != new
        if self._member_cache is not None and changed.any():
            if (replaced[changed] == -1).all():  # only empty slots filled: extend the lists
                for label in np.unique(new[changed]).tolist():
                    added = slots[changed & (new == label)]
                    self._member_cache[label] = np.concatenate([self.members(label), added])
            else:
                self._member_cache = None

    def _on_remove(self, slots: np.ndarray) -> None:
        self.class_stored -= np.bincount(self.slot_labels[slots], minlength=len(self.class_stored))
        self.slot_labels[slots] = -1
        self._member_cache = None

    def _move(self, sources: np.ndarray, targets: np.ndarray) -> None:
        super()._move(sources, targets)
        self._member_cache = None
        self.slot_labels[targets] = self.slot_labels[sources]
        self.slot_labels[sources] = -1

    def _select_slots(self, batch: Mapping[str, torch.Tensor], count: int) -> tuple[np.ndarray, np.ndarray]:
        self._batch = batch
        self._batch_labels = self._labels_of(batch)
        seen_before = self._count_labels(self._batch_labels)
        return self._select_class_slots(self._batch_labels, seen_before)

    def _select_class_slots(self, labels: np.ndarray, seen_before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        return {
            "class_seen": self.class_seen.copy(),
            "class_stored": self.class_stored.copy(),
            "slot_labels": self.slot_labels.copy(),
        }

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.class_seen = np.asarray(state["class_seen"]).copy()
        self.class_stored = np.asarray(state["class_stored"]).copy()
        self.slot_labels = np.asarray(state["slot_labels"]).copy()
        self._member_cache = None
