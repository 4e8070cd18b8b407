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
    # removed(L) = sum_i min(max(v_i - L, 0), c_i), the units gone when every entry is cut down
    # to level L, is non-increasing and linear between the breakpoints v_i and v_i - c_i: find
    # the smallest integer L with removed(L) <= remove on the segment that contains it
    points = np.unique(np.concatenate([values, values - caps]))
    removed = np.minimum(np.clip(values - points[:, None], 0, None), caps).sum(1)
    k = int(np.argmax(removed <= remove))  # removed(points[-1]) == 0, so some point qualifies
    level = int(points[k])
    if k > 0 and removed[k] < remove:  # the level lies inside (points[k-1], points[k]]
        slope = (removed[k - 1] - removed[k]) // (points[k] - points[k - 1])
        level = int(points[k - 1] + -(-(removed[k - 1] - remove) // slope))
    removal = np.minimum(np.clip(values - level, 0, None), caps)
    extra = remove - int(removal.sum())
    if extra:  # one more unit from `extra` of the entries sitting at the level
        tie_order = np.asarray(tie_order, dtype=np.int64)
        at_level = tie_order[(values[tie_order] >= level) & (removal[tie_order] < caps[tie_order])]
        removal[at_level[:extra]] += 1
    return removal


def equal_quotas(num_classes: int, capacity: int) -> np.ndarray:
    """Capacity shared equally among `num_classes`; the remainder goes to the first classes."""
    base, extra = divmod(capacity, num_classes)
    quotas = np.full(num_classes, base, dtype=np.int64)
    quotas[:extra] += 1
    return quotas


def group_ranks(labels: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions hold the same (non-negative) label."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels)
    group_start = np.cumsum(counts) - counts
    ranks = np.empty(len(labels), dtype=np.int64)
    ranks[order] = np.arange(len(labels)) - group_start[labels[order]]
    return ranks
