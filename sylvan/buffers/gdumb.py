"""GDumb's greedy class-balanced memory (Prabhu, Torr & Dokania, ECCV 2020)."""

from __future__ import annotations

from typing import Mapping

import torch

from sylvan.buffers.balancing import level_down
from sylvan.buffers.class_aware import ClassAwareBuffer


class GDumbBuffer(ClassAwareBuffer):
    """Stores every sample while there is room; once full, a sample of class c gets in only by
    evicting a random sample of the currently largest class, and is dropped when c is itself the
    largest. Over a batch this is the same as cutting the largest classes down ("leveling") until
    the memory fits; a class at the top keeps its oldest samples, so the memory is greedy rather
    than uniform within a class.

    Invariant after every `add` when full: every class that lost a sample holds within one of the
    largest class.
    """

    policy = "gdumb"

    def _select_slots(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        labels = batch[self.label_field].long().to(self.device)
        self._count_labels(labels)
        stored = self.stored_per_class()
        incoming = torch.bincount(labels.cpu(), minlength=len(stored))
        overflow = int(stored.sum() + incoming.sum()) - self.capacity
        removal = level_down(stored + incoming, max(0, overflow), self.generator)
        # a class being cut drops its newest incoming samples first, then random stored ones
        skip_new = torch.minimum(removal, incoming)
        drop_old = removal - skip_new
        if int(drop_old.sum()):
            drops = [self._random_slots_of(int(c), int(drop_old[c])) for c in torch.nonzero(drop_old).flatten()]
            self._remove_slots(torch.cat(drops))
        keep = torch.ones(len(labels), dtype=torch.bool, device=self.device)
        for label in torch.nonzero(skip_new).flatten().tolist():
            members = torch.nonzero(labels == label).flatten()
            keep[members[len(members) - int(skip_new[label]):]] = False
        positions = torch.nonzero(keep).flatten()
        slots = torch.arange(self.size, self.size + len(positions), device=self.device)
        self.size += len(positions)
        return slots, positions
