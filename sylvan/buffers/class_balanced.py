"""Class-balanced reservoir: one reservoir per class, the capacity shared equally among the
classes seen so far (as in the class-balanced memories of Chrysakis & Moens 2020, and the
"balanced reservoir" of many replay papers)."""

from __future__ import annotations

from typing import Mapping

import torch

from sylvan.buffers.balancing import equal_quotas
from sylvan.buffers.class_aware import ClassAwareBuffer


class ClassBalancedBuffer(ClassAwareBuffer):
    """Each class c seen so far owns a quota of capacity / (number of classes seen) slots and
    keeps a uniform sample (reservoir sampling) of its own stream in them. When a new class
    appears, the quotas shrink and every class over its quota drops random samples.

    Invariant after every `add`: class c stores exactly min(seen_c, quota_c) samples. Quotas are
    recomputed once per batch (with the classes of that batch included).
    """

    policy = "class_balanced"

    def _select_slots(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        labels = batch[self.label_field].long().to(self.device)
        seen_before = self._count_labels(labels)
        present = torch.nonzero(self.class_seen).flatten()
        quotas = torch.zeros_like(self.class_seen)
        quotas[present] = equal_quotas(len(present), self.capacity)

        # shrink: classes over their (new) quota drop uniformly random samples
        stored = self.stored_per_class()
        excess = (stored - quotas).clamp(min=0)
        if int(excess.sum()):
            drops = [self._random_slots_of(int(c), int(excess[c])) for c in torch.nonzero(excess).flatten()]
            self._remove_slots(torch.cat(drops))
            stored = self.stored_per_class()

        slots, positions = [], []
        slot_labels = self.storage[self.label_field][: self.size].long()
        next_free = self.size
        for label in torch.unique(labels).tolist():
            members = torch.nonzero(labels == label).flatten()  # batch positions, in stream order
            quota, held = int(quotas[label]), int(stored[label])
            fills = min(len(members), quota - held)
            class_slots = torch.cat([
                torch.nonzero(slot_labels == label).flatten(),
                torch.arange(next_free, next_free + fills, device=self.device),
            ])
            next_free += fills
            # reservoir within the class: its k-th sample (0-based) replaces a uniformly drawn
            # one of [0, k] when that index falls inside the class's slots
            index_in_class = int(seen_before[label]) + torch.arange(len(members), device=self.device)
            draws = torch.rand(len(members), generator=self.generator, device=self.device)
            chosen = torch.minimum((draws * (index_in_class + 1).to(draws.dtype)).long(), index_in_class)
            chosen[:fills] = torch.arange(held, held + fills, device=self.device)
            accepted = chosen < quota
            slots.append(class_slots[chosen[accepted]])
            positions.append(members[accepted])
        self.size = next_free
        return _last_writer_wins(torch.cat(slots), torch.cat(positions), self.capacity)


def _last_writer_wins(slots: torch.Tensor, positions: torch.Tensor, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where several batch samples target one slot, keep the latest, as sequential insertion would."""
    if slots.numel() <= 1:
        return slots, positions
    winner = torch.full((capacity,), -1, dtype=torch.long, device=slots.device)
    winner.scatter_reduce_(0, slots, positions, reduce="amax")
    kept = torch.nonzero(winner >= 0).flatten()
    return kept, winner[kept]
