"""Shared arithmetic of class-balanced policies: quotas and leveling, on small NumPy arrays."""

from __future__ import annotations

import numpy as np


def level_down(
    values: np.ndarray, remove: int, tie_order: np.ndarray, caps: np.ndarray | None = None
) -> np.ndarray:
    """How many units to remove from each entry so that `remove` units go, always from the
    entries whose value is largest ("water-filling" from the top): each unit removed from an
    entry lowers its value by one, and at most `caps[i]` units can come from entry i (default:
    `values[i]`, so counts never go below zero). Ties at the final level are broken in the order
    of `tie_order` (a permutation of the entries; pass a random one)."""
    values = np.asarray(values, dtype=np.int64)
    caps = values.clip(min=0) if caps is None else np.asarray(caps, dtype=np.int64)
    if remove <= 0:
        return np.zeros_like(values)
    if remove > int(caps.sum()):
        raise ValueError(f"cannot remove {remove} when at most {int(caps.sum())} can go")

    def removal_at(level: int) -> np.ndarray:
        return np.minimum(np.clip(values - level, 0, None), caps)

    # smallest level L such that cutting every entry down to L removes at most `remove`
    low, high = int((values - caps).min()), int(values.max())
    while low < high:
        middle = (low + high) // 2
        if int(removal_at(middle).sum()) <= remove:
            high = middle
        else:
            low = middle + 1
    removal = removal_at(low)
    extra = remove - int(removal.sum())
    if extra:  # one more unit from `extra` of the entries sitting at the level
        at_level = [i for i in tie_order if values[i] >= low and removal[i] < caps[i]]
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
