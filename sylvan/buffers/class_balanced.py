"""Class-balanced reservoir: one reservoir per class, the capacity shared equally among the
classes seen so far (the class-balanced memory of Chrysakis & Moens, ICML 2020, and the
"balanced reservoir" of many replay papers)."""

from __future__ import annotations

import numpy as np

from sylvan.buffers.balancing import equal_quotas, group_ranks
from sylvan.buffers.class_aware import ClassAwareBuffer
from sylvan.buffers.reservoir import last_writer_wins


class ClassBalancedBuffer(ClassAwareBuffer):
    """Each class c seen so far owns a quota of capacity / (number of classes seen) slots and
    keeps a uniform sample (reservoir sampling) of its own stream in them. When a new class
    appears, the quotas shrink and every class over its quota drops random samples.

    Invariant after every `add`: class c stores exactly min(seen_c, quota_c) samples. Quotas are
    recomputed once per batch (with the classes of that batch included).
    """

    policy = "class_balanced"

    def _select_class_slots(self, labels: np.ndarray, seen_before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        present = np.flatnonzero(self.class_seen)
        quotas = np.zeros(len(self.class_seen), dtype=np.int64)
        quotas[present] = equal_quotas(len(present), self.capacity)

        excess = np.clip(self.stored_per_class() - quotas, 0, None)
        if excess.any():  # quotas shrank: drop uniformly random samples of the classes over them
            self._remove_slots(np.concatenate([self._random_slots_of(c, excess[c]) for c in np.flatnonzero(excess)]))
        held = self.stored_per_class()

        # k-th sample of class c in this batch; its index in the class's stream
        rank = group_ranks(labels)
        index_in_class = seen_before[labels] + rank
        fills = np.clip(quotas - held, 0, np.bincount(labels, minlength=len(quotas)))
        fill_start = self.size + np.concatenate([[0], np.cumsum(fills)[:-1]])
        is_fill = rank < fills[labels]
        # reservoir within the class: its j-th sample replaces slot index u*(j+1) of the class
        # when that index is below the quota
        chosen = np.minimum((self._uniform(len(labels)) * (index_in_class + 1)).astype(np.int64), index_in_class)
        chosen = np.where(is_fill, held[labels] + rank, chosen)
        accepted = chosen < quotas[labels]
        positions = np.flatnonzero(accepted)
        classes, chosen = labels[positions], chosen[positions]
        # chosen < held: an old slot of the class; otherwise one of the class's fill slots
        slots = fill_start[classes] + chosen - held[classes]
        old = chosen < held[classes]
        if old.any() and self._member_cache is None:
            self.build_member_cache()
        for label in np.unique(classes[old]):  # a lookup per class, not per sample
            pick = old & (classes == label)
            slots[pick] = self.members(label)[chosen[pick]]
        self.size += int(fills.sum())
        return last_writer_wins(slots, positions)
