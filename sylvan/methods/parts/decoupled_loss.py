"""LODE's decoupled loss of the incoming samples (Liang and Li, "Loss Decoupling for Task-Agnostic
Continual Learning", NeurIPS 2023): new classes compete among themselves, and new against old by
a weighted inter-task term; held by `lode` and `lode_derpp`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from sylvan.errors import refuse_if_given
from sylvan.methods.core.supervised import Batch
from sylvan.methods.parts.seen_classes import SeenClasses


def intra_task_loss(logits: torch.Tensor, y: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Each sample's cross-entropy over the classes outside the boolean mask `old` (its own class
    among them): the new classes competing among themselves."""
    return F.cross_entropy(logits.masked_fill(old, float("-inf")), y, reduction="none")


def inter_task_loss(logits: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Each sample's binary cross-entropy of being new rather than old, each side scored by the
    log-sum-exp of its classes' logits (`old`: a boolean mask, neither side empty)."""
    grouped = torch.stack([logits[:, old].logsumexp(dim=1), logits[:, ~old].logsumexp(dim=1)], dim=1)
    return F.cross_entropy(grouped, torch.ones(len(logits), dtype=torch.long, device=logits.device), reduction="none")


def decoupled_loss(logits: torch.Tensor, y: torch.Tensor, old: torch.Tensor, inter_weight: float) -> torch.Tensor:
    """The mean over the samples of LODE's loss: intra + `inter_weight` * inter for a sample of a
    class outside `old`, the cross-entropy over every class for one inside (and for all of them
    while no class is old)."""
    known = old[y]
    total = F.cross_entropy(logits[known], y[known], reduction="sum") if bool(known.any()) else logits.new_zeros(())
    fresh = ~known
    if bool(fresh.any()):
        new = intra_task_loss(logits[fresh], y[fresh], old)
        if bool(old.any()):
            new = new + inter_weight * inter_task_loss(logits[fresh], old)
        total = total + new.sum()
    return total / len(y)


class DecoupledLoss:
    """LODE's loss of the incoming samples, which a method uses in place of their cross-entropy:
    decoupled (`decoupled_loss`, its inter-task term weighted by `rho` times the classes met in
    the current task over the old ones), or coupled (the cross-entropy over every class, the
    baseline). Records the minibatch's classes in the method's `SeenClasses`."""

    def __init__(self, seen_classes: SeenClasses, rho: float, decouple: bool) -> None:
        self.seen_classes, self.rho, self.decouple = seen_classes, rho, decouple

    def inter_task_weight(self, active: torch.Tensor, old: torch.Tensor) -> float:
        """rho * |C_t| / |C_old| (0 while no class is old)."""
        old_count = int(old.sum())
        return self.rho * int((active & ~old).sum()) / old_count if old_count else 0.0

    def __call__(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        active, old = self.seen_classes.observe(batch.y)
        if not self.decouple:
            return F.cross_entropy(logits, batch.y)
        return decoupled_loss(logits, batch.y, old, self.inter_task_weight(active, old))


def check_decoupling(method: Any) -> None:
    """Refuse a negative `--rho`, or one given with `--decouple_loss false`."""
    method.require_at_least(0, "rho")
    if not method.decouple_loss:
        refuse_if_given(method, "rho", "it weighs the decoupled loss's inter-task term, and --decouple_loss is false")
