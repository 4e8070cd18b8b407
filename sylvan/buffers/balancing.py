"""Shared arithmetic of class-balanced policies: quotas and leveling, on small NumPy arrays."""

from __future__ import annotations

import numpy as np


def level_down(counts: np.ndarray, remove: int, tie_order: np.ndarray) -> np.ndarray:
    """How many to remove from each entry of `counts` so that `remove` units go, always from the
    largest entries ("water-filling" from the top). Ties at the final level are broken in the
    order of `tie_order` (a permutation of the entries; pass a random one). Raises if `remove`
    exceeds the total."""
    counts = np.asarray(counts, dtype=np.int64)
    if remove <= 0:
        return np.zeros_like(counts)
    if remove > int(counts.sum()):
        raise ValueError(f"cannot remove {remove} from a total of {int(counts.sum())}")
    # smallest level L such that cutting every count down to L removes at most `remove`
    low, high = 0, int(counts.max())
    while low < high:
        middle = (low + high) // 2
        if int(np.clip(counts - middle, 0, None).sum()) <= remove:
            high = middle
        else:
            low = middle + 1
    removal = np.clip(counts - low, 0, None)
    extra = remove - int(removal.sum())
    if extra:
        at_level = [i for i in tie_order if counts[i] >= low]  # one entry per class, not per sample
        removal[np.asarray(at_level[:extra], dtype=np.int64)] += 1
    return removal


def equal_quotas(num_classes: int, capacity: int) -> np.ndarray:
    """Capacity shared equally among `num_classes`; the remainder goes to the first classes."""
    base, extra = divmod(capacity, num_classes)
    quotas = np.full(num_classes, base, dtype=np.int64)
    quotas[:extra] += 1
    return quotas


def group_ranks(labels: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions hold the same label (0 for the first)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(labels)]))
    ranks = np.empty(len(labels), dtype=np.int64)
    ranks[order] = np.arange(len(labels)) - run_start
    return ranks
