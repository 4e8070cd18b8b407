"""Class-balanced ring buffer: one first-in-first-out ring per class, the capacity shared equally
among the classes seen so far (the "ring buffer" of Chaudhry et al., "On Tiny Episodic Memories
in Continual Learning", 2019, ER-ring: each class keeps its most recent samples)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Mapping

import numpy as np
import torch

from sylvan.buffers.balancing import group_ranks
from sylvan.buffers.class_balanced import ClassBalancedBuffer


class RingBuffer(ClassBalancedBuffer):
    """Class c seen so far owns the same quota as in `class_balanced` and keeps the most recent
    min(seen_c, quota_c) samples of its own stream: a new sample of a class below its quota
    takes a free slot, one of a class at its quota replaces the oldest sample of that class;
    when a new class appears and the quotas shrink, each class over its quota drops its oldest
    samples. No random number is drawn.

    Each slot remembers when its sample arrived (its index in the stream). The slots of each
    class, oldest first, form a ring in a segment of `quota_c` entries, with a head at the oldest:
    a batch's samples of class c fill the segment's free entries, then take the ring's slots from
    the head on, in batch order, and the head moves past them. A batch so costs a few vectorized
    operations and no sort; the rings are rebuilt (one sort of the occupied slots by class and
    arrival) only when the quotas change, that is when a new class appears.
    """

    policy = "ring"

    def __init__(
        self, capacity: int, device: torch.device | str | None = None, seed: int = 0, retrieval: str = "uniform",
        pixel_fields: Sequence[str] = (),
    ) -> None:
        super().__init__(capacity, device=device, seed=seed, retrieval=retrieval, pixel_fields=pixel_fields)
        self.slot_arrivals = np.full(self.capacity, -1, dtype=np.int64)  # stream index of each slot's sample
        # (order, starts, heads, segments): label c's slots are order[starts[c]:starts[c] + stored_c]
        # (a segment of segments[c] entries), oldest first from position heads[c] on, cyclically;
        # None when the slots moved and it must be rebuilt
        self._rings: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def rings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(order, starts, heads, segments), each label's segment as long as its quota (or what
        it holds, if more); rebuilt with one sort by label and arrival when the segments change."""
        segments = np.maximum(self.class_stored, self.quotas())
        if self._rings is None or self._rings[3].tobytes() != segments.tobytes():
            size, stored = self.size, self.class_stored
            by_class = np.lexsort((self.slot_arrivals[:size], self.slot_labels[:size]))
            labels = self.slot_labels.take(by_class)
            starts = np.cumsum(segments) - segments
            order = np.full(int(segments.sum()), -1, dtype=np.int64)
            order[starts.take(labels) + np.arange(size) - (np.cumsum(stored) - stored).take(labels)] = by_class
            self._rings = (order, starts, np.zeros(len(segments), dtype=np.int64), segments)
        return self._rings

    def oldest(self, counts: np.ndarray) -> np.ndarray:
        """For every label c, its `counts[c]` oldest slots (oldest first), labels in increasing order."""
        classes = counts.nonzero()[0]
        if len(classes) == 0:
            return np.empty(0, dtype=np.int64)
        order, starts, heads, _ = self.rings()
        wanted = counts.take(classes)
        label = np.repeat(classes, wanted)
        age_rank = np.arange(len(label)) - np.repeat(np.cumsum(wanted) - wanted, wanted)
        return order.take(starts.take(label) + (heads.take(label) + age_rank) % self.class_stored.take(label))

    def _select_class_slots(self, labels: np.ndarray, seen_before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        quotas = self.quotas()
        excess = self.class_stored - quotas
        if (excess > 0).any():  # quotas shrank: each class over its quota drops its oldest samples
            self._remove_slots(self.oldest(np.clip(excess, 0, None)))
        order, starts, heads, _ = self.rings()
        batch_counts = self._batch_counts
        # of a class's samples in this batch, only its last quota_c can still be held after it
        rank = group_ranks(labels, batch_counts)
        surplus = batch_counts - quotas
        if (surplus > 0).any():
            kept = (rank >= surplus.take(labels)).nonzero()[0]
            rank = rank.take(kept) - np.clip(surplus, 0, None).take(labels.take(kept))
        else:
            kept = np.arange(len(labels), dtype=np.int64)
        kept_labels = labels.take(kept)
        stored = self.class_stored
        free = quotas - stored
        # the k-th kept sample of class c (in batch order) takes the k-th free entry of c's
        # segment, a fresh slot, while there is one, then the oldest slots of c from the head on
        # (a class with free entries has never replaced a sample since its ring was built: its
        # head is 0, and the entries it replaces are not those it just filled)
        free_of = free.take(kept_labels)
        if not free_of.any():  # the steady state: every class of the batch replaces from its head
            slots = order.take(starts.take(kept_labels) + (heads.take(kept_labels) + rank) % quotas.take(kept_labels))
            fresh = slots[:0]
        else:
            fills = rank < free_of
            slots = np.empty(len(kept), dtype=np.int64)
            fill_labels = kept_labels[fills]
            fresh = np.arange(self.size, self.size + len(fill_labels), dtype=np.int64)
            order[starts.take(fill_labels) + stored.take(fill_labels) + rank[fills]] = fresh
            replacing = ~fills
            if replacing.any():
                label = kept_labels[replacing]
                ring_position = (heads.take(label) + rank[replacing] - free_of[replacing]) % quotas.take(label)
                slots[replacing] = order.take(starts.take(label) + ring_position)
            slots[fills] = fresh
        replaced = np.minimum(batch_counts, quotas) - free
        moved = replaced > 0
        heads[moved] = (heads[moved] + replaced[moved]) % quotas[moved]
        self.size += len(fresh)
        self.slot_arrivals[slots] = self.seen + kept
        return slots, kept

    def _on_remove(self, slots: np.ndarray) -> None:
        super()._on_remove(slots)
        self.slot_arrivals[slots] = -1
        self._rings = None

    def _move(self, sources: np.ndarray, targets: np.ndarray) -> None:
        super()._move(sources, targets)
        self.slot_arrivals[targets] = self.slot_arrivals[sources]
        self.slot_arrivals[sources] = -1
        self._rings = None

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "slot_arrivals": self.slot_arrivals.copy()}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        super()._load_extra_state(state)
        self.slot_arrivals = np.asarray(state["slot_arrivals"], dtype=np.int64).copy()
        self._rings = None
