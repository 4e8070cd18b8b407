"""Shared arithmetic of class-balanced policies: per-class counts, quotas and leveling."""

from __future__ import annotations

import torch


def level_down(counts: torch.Tensor, remove: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """How many to remove from each entry of `counts` (int64) so that `remove` units go, always
    from the largest entries ("water-filling" from the top). Ties at the final level are broken
    at random. Returns a tensor like `counts`; raises if `remove` exceeds the total."""
    total = int(counts.sum())
    if remove <= 0:
        return torch.zeros_like(counts)
    if remove > total:
        raise ValueError(f"cannot remove {remove} from a total of {total}")
    # smallest level L such that cutting every count down to L removes at most `remove`
    low, high = 0, int(counts.max())
    while low < high:
        middle = (low + high) // 2
        if int((counts - middle).clamp(min=0).sum()) <= remove:
            high = middle
        else:
            low = middle + 1
    removal = (counts - low).clamp(min=0)
    extra = remove - int(removal.sum())
    if extra:
        at_level = torch.nonzero(counts >= low).flatten()
        pick = torch.randperm(len(at_level), generator=generator, device=generator.device if generator else None)
        removal[at_level[pick[:extra].to(at_level.device)]] += 1
    return removal


def equal_quotas(num_classes: int, capacity: int) -> torch.Tensor:
    """Capacity shared equally among `num_classes`; the remainder goes to the first classes."""
    base, extra = divmod(capacity, num_classes)
    quotas = torch.full((num_classes,), base, dtype=torch.long)
    quotas[:extra] += 1
    return quotas
