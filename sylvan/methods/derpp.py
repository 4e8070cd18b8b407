"""`derpp`: DER++ (Buzzega et al., "Dark Experience for General Continual Learning: a Strong,
Simple Baseline", NeurIPS 2020): dark experience replay plus, on a second, independent draw
from the buffer, beta times the cross-entropy with the stored labels. Defaults: the paper's
Seq-MNIST hyperparameters for buffer 200 (lr 0.03, alpha 0.2, beta 1.0, r 128, batch 10)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from sylvan.methods.core.supervised import Batch
from sylvan.methods.der import DER


@dataclass
class DERPlusPlus(DER):
    """DER++: logit matching on one replayed group, label learning on another."""

    name: ClassVar[str] = "derpp"

    replay_size: int = 128  # r: samples in each of the two replayed groups (0: as many as the batch size)
    beta: float = 1.0  # weight of the cross-entropy on the second replayed group

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "beta")

    def replay_draws(self, batch_size: int) -> tuple[int, ...]:
        """Two independent groups of r a step."""
        return (self.replay_count(batch_size),) * 2

    def replay_terms(self, batch: Batch) -> list[tuple[float, dict[str, torch.Tensor]]]:
        """DER's replayed group, and a second, independent one whose labels are learned (weight beta)."""
        groups = super().replay_terms(batch)
        if groups:
            groups.append((self.beta, self.draw_replay(self.replay_count(len(batch.y)))))
        return groups

    def replay_loss(self, index: int, logits: torch.Tensor, replay: dict[str, torch.Tensor]) -> torch.Tensor:
        """The first group's logit matching (DER's), the second group's cross-entropy."""
        if index == 0:
            return super().replay_loss(index, logits, replay)
        return F.cross_entropy(logits, replay["y"])
