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

    Invariant after every `add`: class c stores exactly min(seen_c, quota_c) samples. Quotas change
    when a batch brings labels never seen before, and count that batch's labels.
    """

    policy = "class_balanced"

    def quotas(self) -> np.ndarray:
        """Each label's share of the capacity: equal among the labels seen so far, 0 for others.
        Recomputed only when a label is seen for the first time."""
        return self.per_label_set("quotas", self._equal_quotas)

    def _equal_quotas(self) -> np.ndarray:
        present = np.flatnonzero(self.class_seen)
        quotas = np.zeros(len(self.class_seen), dtype=np.int64)
        quotas[present] = equal_quotas(len(present), self.capacity)
        return quotas

    def _select_class_slots(self, labels: np.ndarray, seen_before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        quotas = self.quotas()
        # every class seen fills its quota exactly (both int64: equal bytes, equal arrays)
        if self.class_stored.tobytes() == quotas.tobytes():
            return self._replace_within_classes(labels, seen_before, quotas)

        excess = np.clip(self.stored_per_class() - quotas, 0, None)
        if excess.any():  # quotas shrank: drop uniformly random samples of the classes over them
            self._remove_slots(self._random_slots_by_class(excess))
        held = self.stored_per_class()

        # k-th sample of class c in this batch; its index in the class's stream
        rank = group_ranks(labels, self._batch_counts)
        index_in_class = seen_before[labels] + rank
        fills = np.clip(quotas - held, 0, self._batch_counts)
        fill_start = self.size + np.concatenate([[0], np.cumsum(fills)[:-1]])
        is_fill = rank < fills[labels]
        # reservoir within the class: its j-th sample replaces slot index u*(j+1) of the class
        # when that index is below the quota
        draws = self._uniform(len(labels), reuse=True)
        chosen = np.minimum((draws * (index_in_class + 1)).astype(np.int64), index_in_class)
        chosen = np.where(is_fill, held[labels] + rank, chosen)
        accepted = chosen < quotas[labels]
        positions = np.flatnonzero(accepted)
        classes, chosen = labels[positions], chosen[positions]
        # chosen < held: an old slot of the class; otherwise one of the class's fill slots
        slots = fill_start[classes] + chosen - held[classes]
        old = chosen < held[classes]
        if old.any():  # the chosen-th slot of the class, in slot order
            order, starts = self.class_index()
            slots[old] = order[starts[classes[old]] + chosen[old]]
        self.size += int(fills.sum())
        return last_writer_wins(slots, positions)

    def _replace_within_classes(
        self, labels: np.ndarray, seen_before: np.ndarray, quotas: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The steady state, where every class seen fills its quota: per-class reservoir
        sampling alone, no fills, no removals."""
        index_in_class = seen_before.take(labels) + group_ranks(labels, self._batch_counts)
        index_in_class += 1
        chosen = (self._uniform(len(labels), reuse=True) * index_in_class).astype(np.int64)
        positions = (chosen < quotas.take(labels)).nonzero()[0]
        order, starts = self.class_index()
        slots = order.take(starts.take(labels.take(positions)) + chosen.take(positions))
        return last_writer_wins(slots, positions)
