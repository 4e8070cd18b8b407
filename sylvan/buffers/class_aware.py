"""Base of the policies that balance the buffer over classes. They count, per label, the
samples seen so far, and keep a CPU copy of the label of every slot, so that their decisions
need no device round trip (the label field is "y")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Mapping

import numpy as np
import torch

from sylvan.buffers.balancing import group_ranks
from sylvan.buffers.base import RehearsalBuffer

INT16_MAX = np.iinfo(np.int16).max


class ClassAwareBuffer(RehearsalBuffer):
    """Keeps `class_seen[c]` (samples of label c offered so far) and `slot_labels`."""

    label_field = "y"

    def __init__(
        self, capacity: int, device: torch.device | str | None = None, seed: int = 0, retrieval: str = "uniform",
        pixel_fields: Sequence[str] = (),
    ) -> None:
        super().__init__(capacity, device=device, seed=seed, retrieval=retrieval, pixel_fields=pixel_fields)
        self.class_seen = np.zeros(0, dtype=np.int64)
        self.class_stored = np.zeros(0, dtype=np.int64)
        self.slot_labels = np.full(self.capacity, -1, dtype=np.int64)
        # the occupied slots grouped by label, in slot order within a label, and where each
        # label's group starts; None when a label changed and it must be rebuilt
        self._class_index: tuple[np.ndarray, np.ndarray] | None = None
        self._batch_counts = np.zeros(0, dtype=np.int64)  # the current batch's labels, counted
        self._label_set_cache: dict[str, tuple[tuple[int, int], Any]] = {}  # see `per_label_set`

    def per_label_set(self, name: str, compute: Callable[[], Any]) -> Any:
        """`compute()`, kept under `name` for as long as the set of labels seen stays the same
        (per-label shares of the capacity depend on nothing else). That set only grows, so the
        length of `class_seen` and its count of non-zero entries tell whether it changed."""
        key = (len(self.class_seen), int(np.count_nonzero(self.class_seen)))
        cached = self._label_set_cache.get(name)
        if cached is None or cached[0] != key:
            cached = self._label_set_cache[name] = (key, compute())
        return cached[1]

    def _labels_of(self, batch: Mapping[str, torch.Tensor]) -> np.ndarray:
        if self.label_field not in batch:
            raise ValueError(f"the {self.policy} policy needs a {self.label_field!r} field in every batch")
        values = batch[self.label_field].detach()
        try:
            labels = values.numpy()
        except TypeError:  # on CUDA
            labels = values.cpu().numpy()
        return labels if labels.dtype == np.int64 else labels.astype(np.int64)

    def _count_labels(self, labels: np.ndarray) -> np.ndarray:
        """Add the batch's labels to `class_seen` and keep the batch's own counts in
        `_batch_counts` (as long as `class_seen`); return the counts before this batch."""
        try:
            counts = np.bincount(labels, minlength=len(self.class_seen))
        except ValueError:  # bincount refuses negative values
            raise ValueError(f"the {self.policy} policy needs labels >= 0") from None
        self._batch_counts = counts
        before = self.class_seen
        if len(counts) > len(before):  # a label larger than any seen so far
            before = np.zeros(len(counts), dtype=np.int64)
            before[: len(self.class_seen)] = self.class_seen
            if len(self.class_stored) < len(counts):
                grown = np.zeros(len(counts), dtype=np.int64)
                grown[: len(self.class_stored)] = self.class_stored
                self.class_stored = grown
                self._class_index = None  # its group starts must cover the new labels too
        self.class_seen = before + counts
        return before

    def stored_per_class(self) -> np.ndarray:
        """Stored samples per label, aligned with `class_seen` (kept up to date on every write,
        move and removal, so reading it costs nothing)."""
        return self.class_stored.copy()

    def class_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(order, starts): `order[starts[c] : starts[c] + stored_c]` are the slots holding label
        c, in slot order. Rebuilt with one stable sort after labels change (a radix sort on 16-bit
        labels, linear in the capacity), and kept while writes replace samples of a label by
        samples of the same label."""
        if self._class_index is None:
            labels = self.slot_labels[: self.size]
            if len(self.class_stored) <= INT16_MAX:
                labels = labels.astype(np.int16)
            order = np.argsort(labels, kind="stable")
            starts = np.cumsum(self.class_stored) - self.class_stored
            self._class_index = (order, starts)
        return self._class_index

    def members(self, label: int) -> np.ndarray:
        """The occupied slots holding `label`, in slot order."""
        if label >= len(self.class_stored):
            return np.empty(0, dtype=np.int64)
        order, starts = self.class_index()
        return order[starts[label] : starts[label] + self.class_stored[label]]

    def _random_slots_by_class(self, counts: np.ndarray) -> np.ndarray:
        """For every label c, `counts[c]` distinct occupied slots drawn uniformly among those
        holding c, all labels at once: each label draws positions in its group of the class
        index, and draws again as many as were repeated (the distinct values of a uniform
        sequence, drawn until there are `counts[c]` of them, are a uniform random subset)."""
        classes = counts.nonzero()[0]
        if len(classes) == 0:
            return np.empty(0, dtype=np.int64)
        order, starts = self.class_index()
        wanted, held = counts.take(classes), self.class_stored.take(classes)
        dense = 2 * wanted > held  # most of the label goes: a permutation, without rejections
        chosen = []
        if dense.any():
            if (wanted > held).any():
                raise ValueError("cannot draw more samples of a label than the buffer holds")
            chosen = [
                starts[c] + self._choose(int(n), int(k)) for c, n, k in zip(classes[dense], held[dense], wanted[dense])
            ]
            sparse = ~dense
            classes, held, wanted = classes[sparse], held[sparse], wanted[sparse]
        first, size = starts.take(classes), held
        sizes = size.repeat(wanted)
        drawn = first.repeat(wanted) + (self._uniform(len(sizes), reuse=True) * sizes).astype(np.int64)
        if len(set(drawn.tolist())) == len(drawn):  # no position drawn twice: the common case
            return order.take(np.concatenate([drawn, *chosen]) if chosen else drawn)
        drawn = np.unique(drawn)
        missing = wanted - np.bincount(np.searchsorted(first, drawn, side="right") - 1, minlength=len(first))
        while missing.any():
            # draw a few more than missing (about the repeats expected), so one round mostly does
            extra = missing + (missing * missing) // size + 1
            group = np.repeat(np.arange(len(missing)), extra)
            candidates = first[group] + (self._uniform(len(group)) * size[group]).astype(np.int64)
            merged = np.concatenate([drawn, candidates])
            _, first_seen = np.unique(merged, return_index=True)
            merged = merged[np.sort(first_seen)]  # distinct, in the order they were drawn
            label_group = np.searchsorted(first, merged, side="right") - 1
            kept = group_ranks(label_group) < wanted[label_group]
            drawn = merged[kept]
            missing = wanted - np.bincount(label_group[kept], minlength=len(first))
        return order[np.concatenate([drawn, *chosen])]

    def _assign_slots(self, dropped: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slots, positions) for writing the batch samples at `positions` over the `dropped`
        slots, then into fresh slots at the end (this sets `self.size`). Which incoming sample
        takes which dropped slot does not change what the buffer holds, so samples take slots of
        their own label first: a batch whose evictions match its admissions label for label
        (the steady state of a policy that levels classes, such as PRS) then changes no slot's
        label, and the class index stays valid instead of being sorted again. The pairs come
        back in the order of `positions` (batch order): the rows are then read from the batch
        front to back, which memory prefetching rewards on large samples."""
        appended = len(positions) - len(dropped)
        fresh = np.arange(self.size, self.size + appended, dtype=np.int64)
        self.size += appended
        if len(dropped) == 0:
            return fresh, positions
        old = self.slot_labels.take(dropped)
        new = self._batch_labels.take(positions)
        size = len(self.class_stored)
        old_counts, new_counts = np.bincount(old, minlength=size), np.bincount(new, minlength=size)
        matched = np.minimum(old_counts, new_counts)
        if not matched.any():  # no label both leaves and enters (GDumb's leveling, for one)
            return np.concatenate([dropped, fresh]), positions
        by_old, by_new = old.argsort(kind="stable"), new.argsort(kind="stable")
        if len(dropped) == len(positions) and old_counts.tobytes() == new_counts.tobytes():
            # label for label: the k-th sample of a label in batch order takes the k-th dropped
            # slot of that label
            slots = np.empty_like(dropped)
            slots[by_new] = dropped.take(by_old)
            return slots, positions
        # the first min(dropped, incoming) of each label pair up; the rest pair across labels
        dropped, paired = dropped.take(by_old), positions.take(by_new)
        old_sorted, new_sorted = old.take(by_old), new.take(by_new)
        same_old = group_ranks(old_sorted, old_counts) < matched.take(old_sorted)
        same_new = group_ranks(new_sorted, new_counts) < matched.take(new_sorted)
        slots = np.concatenate([dropped[same_old], dropped[~same_old], fresh])
        paired = np.concatenate([paired[same_new], paired[~same_new]])
        in_batch_order = paired.argsort(kind="stable")
        return slots.take(in_batch_order), paired.take(in_batch_order)

    def _write(self, slots: np.ndarray, positions: np.ndarray, batch: Mapping[str, torch.Tensor]) -> None:
        super()._write(slots, positions, batch)
        replaced = self.slot_labels[slots]
        new = self._batch_labels[positions]
        if (replaced != new).any():  # samples replaced by samples of their own label change no count
            size = len(self.class_stored)
            self.class_stored += np.bincount(new, minlength=size) - np.bincount(replaced[replaced >= 0], minlength=size)
            self.slot_labels[slots] = new
            self._class_index = None

    def _on_remove(self, slots: np.ndarray) -> None:
        self.class_stored -= np.bincount(self.slot_labels[slots], minlength=len(self.class_stored))
        self.slot_labels[slots] = -1
        self._class_index = None

    def _move(self, sources: np.ndarray, targets: np.ndarray) -> None:
        super()._move(sources, targets)
        self._class_index = None
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
        self._class_index = None
        self._label_set_cache.clear()
