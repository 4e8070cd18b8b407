"""Shared arithmetic of class-balanced policies: quotas and leveling, on small NumPy arrays."""

from __future__ import annotations

from typing import Callable

import numpy as np


def level_down(
    values: np.ndarray,
    remove: int,
    tie_order: np.ndarray | Callable[[], np.ndarray],
    caps: np.ndarray | None = None,
) -> np.ndarray:
    """How many units to remove from each entry so that `remove` units go, always from the
    entries whose value is largest ("water-filling" from the top): each unit removed from an
    entry lowers its value by one, and at most `caps[i]` units can come from entry i (default:
    `values[i]`, so counts never go below zero). Ties at the final level are broken in the order
    of `tie_order` (a permutation of the entries; pass a random one, or a function that draws
    one, called only when there is a tie to break)."""
    if remove > 0:  # the common case of a leveled memory: exactly the positive parts go (level 0)
        positive = np.maximum(values, 0)
        if positive.sum() == remove and (caps is None or (positive <= caps).all()):
            return positive.astype(np.int64, copy=False)
    # removed(L) = sum_i min(max(v_i - L, 0), c_i), the units gone when every entry is cut down
    # to level L, grows by one per entry "active" at L (v_i - c_i <= L < v_i) for each step L
    # goes down: sweep the breakpoints from the top and stop in the segment where it would pass
    # `remove`. Plain Python on the class counts: a few dozen entries, one pass, no array calls.
    v = np.asarray(values, dtype=np.int64).tolist()
    c = [max(x, 0) for x in v] if caps is None else np.asarray(caps, dtype=np.int64).tolist()
    if remove <= 0:
        return np.zeros(len(v), dtype=np.int64)
    if remove > sum(c):
        raise ValueError(f"cannot remove {remove} when at most {sum(c)} can go")
    events = sorted(
        [(vi, 1) for vi, ci in zip(v, c) if ci > 0] + [(vi - ci, -1) for vi, ci in zip(v, c) if ci > 0], reverse=True
    )
    removed = active = 0
    level = events[0][0]
    for point, change in events:
        if point != level:
            if removed + active * (level - point) > remove:  # the level lies inside this segment
                level -= (remove - removed) // active
                break
            removed += active * (level - point)
            level = point
        active += change
    removal = [min(max(vi - level, 0), ci) for vi, ci in zip(v, c)]
    extra = remove - sum(removal)
    if extra:  # one more unit from `extra` of the entries sitting at the level
        for i in np.asarray(tie_order() if callable(tie_order) else tie_order).tolist():
            if v[i] >= level and removal[i] < c[i]:
                removal[i] += 1
                extra -= 1
                if not extra:
                    break
    return np.array(removal, dtype=np.int64)


def equal_quotas(num_classes: int, capacity: int) -> np.ndarray:
    """Capacity shared equally among `num_classes`; the remainder goes to the first classes."""
    base, extra = divmod(capacity, num_classes)
    quotas = np.full(num_classes, base, dtype=np.int64)
    quotas[:extra] += 1
    return quotas


def group_ranks(labels: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """For each position, how many earlier positions hold the same (non-negative) label.
    `counts`, if given, is `np.bincount(labels)` (trailing zeros allowed), already computed."""
    # array methods rather than np.* functions: this runs on every batch, on ~100 integers,
    # where the functions' dispatch costs as much as the work
    order = labels.argsort(kind="stable")
    if counts is None:
        counts = np.bincount(labels)
    group_start = counts.cumsum()
    group_start -= counts
    ranks = np.empty(len(labels), dtype=np.int64)
    ranks[order] = np.arange(len(labels)) - group_start.take(labels.take(order))
    return ranks
