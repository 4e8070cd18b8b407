"""GDumb's greedy class-balanced memory (Prabhu, Torr & Dokania, ECCV 2020)."""

from __future__ import annotations

import numpy as np

from sylvan.buffers.balancing import group_ranks, level_down
from sylvan.buffers.class_aware import ClassAwareBuffer


class GDumbBuffer(ClassAwareBuffer):
    """Stores every sample while there is room; once full, a sample of class c gets in only by
    evicting a random sample of the currently largest class, and is dropped when c is itself the
    largest. Over a batch this is the same as cutting the largest classes down ("leveling") until
    the memory fits; a class at the top keeps its oldest samples, so the memory is greedy rather
    than uniform within a class.

    Invariant after every `add` when full: every class that lost a sample holds within one of the
    largest class.
    """

    policy = "gdumb"

    def _select_class_slots(self, labels: np.ndarray, seen_before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        stored = self.class_stored
        if self.size == self.capacity and stored[labels].min() == stored.max():
            # the steady state: every class of the batch is already (one of) the largest, so each
            # of its samples would evict one of its own class's, which the policy refuses
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        incoming = self._batch_counts
        overflow = int(stored.sum() + incoming.sum()) - self.capacity
        removal = level_down(stored + incoming, overflow, lambda: self._permutation(len(stored)))
        # a class being cut drops its newest incoming samples first, then random stored ones
        skip_new = np.minimum(removal, incoming)
        drop_old = removal - skip_new
        dropped = np.empty(0, dtype=np.int64)
        if drop_old.any():
            dropped = self._random_slots_by_class(drop_old)
        # keep the first (incoming - skip_new) samples of each class, in batch order; they take
        # the dropped samples' slots, then the free ones (no data moves)
        positions = np.flatnonzero(group_ranks(labels, incoming) < (incoming - skip_new)[labels])
        return self._assign_slots(dropped, positions)
