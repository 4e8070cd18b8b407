"""Partitioning reservoir sampling (Kim, Jeong & Kim, "Imbalanced Continual Learning with
Partitioning Reservoir Sampling", ECCV 2020), in its single-label form."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sylvan.buffers.balancing import group_ranks, level_down
from sylvan.buffers.class_aware import ClassAwareBuffer


class PRSBuffer(ClassAwareBuffer):
    """Each class c has a target share of the memory, m_c = capacity * n_c^rho / sum_j n_j^rho
    (n_c: samples of c seen so far). A new sample of class c enters with probability
    min(1, m_c / n_c); when the memory is full, each entering sample evicts a random sample of the
    class that is most over its target. With rho = 0 the partitions are equal, so rare classes
    keep all their samples (the point of PRS for imbalanced streams); rho = 1 approaches plain
    reservoir sampling. Targets are recomputed once per batch.

    Invariant (rho = 0): a class that has never had more samples than capacity / (classes seen)
    keeps every one of them.
    """

    policy = "prs"

    def __init__(
        self, capacity: int, device: torch.device | str | None = None, seed: int = 0, retrieval: str = "uniform",
        rho: float = 0.0, pixel_fields: Sequence[str] = (),
    ) -> None:
        super().__init__(capacity, device=device, seed=seed, retrieval=retrieval, pixel_fields=pixel_fields)
        self.rho = rho

    def targets(self) -> tuple[np.ndarray, np.ndarray]:
        """(m_c, floor(m_c)) for every label. With rho = 0 they depend only on which labels
        have been seen, so they are computed again only when that set grows."""
        if self.rho == 0:  # equal partitions among the classes seen
            return self.per_label_set("targets", self._compute_targets)
        return self._compute_targets()

    def _compute_targets(self) -> tuple[np.ndarray, np.ndarray]:
        seen = self.class_seen
        weights = np.where(seen > 0, np.power(np.maximum(seen, 1).astype(np.float64), self.rho), 0.0)
        targets = weights * (self.capacity / weights.sum())
        return targets, np.floor(targets).astype(np.int64)

    def _select_class_slots(self, labels: np.ndarray, seen_before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        targets, floor_targets = self.targets()
        count_at_arrival = seen_before.take(labels) + group_ranks(labels, self._batch_counts)
        count_at_arrival += 1
        # the draw is below 1, so it is below min(1, m_c / n) exactly when it is below m_c / n
        accept = self._uniform(len(labels), reuse=True) < targets.take(labels) / count_at_arrival
        positions = accept.nonzero()[0]
        incoming = np.bincount(labels.take(positions), minlength=len(targets))
        stored = self.class_stored
        overflow = self.size + len(positions) - self.capacity
        dropped = np.empty(0, dtype=np.int64)
        if overflow > 0:
            # evict from the classes furthest over their target ("sample-out"), one unit at a time
            held = stored + incoming
            removal = level_down(held - floor_targets, overflow, lambda: self._permutation(len(targets)), caps=held)
            drop_old = np.minimum(removal, stored)
            skip_new = removal - drop_old
            if drop_old.any():
                dropped = self._random_slots_by_class(drop_old)
            if skip_new.any():  # only when a class must give back more than it held: newest first
                ranks = group_ranks(labels[positions])
                kept_new = incoming - skip_new
                positions = positions[ranks < kept_new[labels[positions]]]
        return self._assign_slots(dropped, positions)
