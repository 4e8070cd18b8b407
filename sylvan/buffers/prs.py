"""Partitioning reservoir sampling (Kim, Jeong & Kim, "Imbalanced Continual Learning with
Partitioning Reservoir Sampling", ECCV 2020), in its single-label form."""

from __future__ import annotations

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
        rho: float = 0.0,
    ) -> None:
        super().__init__(capacity, device=device, seed=seed, retrieval=retrieval)
        self.rho = rho

    def _select_class_slots(self, labels: np.ndarray, seen_before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen = self.class_seen
        if self.rho == 0:  # equal partitions among the classes seen
            weights = (seen > 0).astype(np.float64)
        else:
            weights = np.where(seen > 0, np.power(np.maximum(seen, 1).astype(np.float64), self.rho), 0.0)
        targets = weights * (self.capacity / weights.sum())
        count_at_arrival = seen_before[labels] + group_ranks(labels, self._batch_counts) + 1
        accept = self._uniform(len(labels), reuse=True) < np.minimum(1.0, targets[labels] / count_at_arrival)
        positions = np.flatnonzero(accept)
        incoming = np.bincount(labels[positions], minlength=len(seen))
        stored = self.class_stored
        overflow = int(stored.sum() + incoming.sum()) - self.capacity
        dropped = np.empty(0, dtype=np.int64)
        if overflow > 0:
            # evict from the classes furthest over their target ("sample-out"), one unit at a time
            excess = stored + incoming - np.floor(targets).astype(np.int64)
            removal = level_down(excess, overflow, lambda: self._permutation(len(seen)), caps=stored + incoming)
            drop_old = np.minimum(removal, stored)
            skip_new = removal - drop_old
            if drop_old.any():
                dropped = self._random_slots_by_class(drop_old)
            if skip_new.any():  # only when a class must give back more than it held: newest first
                ranks = group_ranks(labels[positions])
                kept_new = incoming - skip_new
                positions = positions[ranks < kept_new[labels[positions]]]
        appended = len(positions) - len(dropped)
        slots = np.concatenate([dropped, np.arange(self.size, self.size + appended, dtype=np.int64)])
        self.size += appended
        return slots, positions
