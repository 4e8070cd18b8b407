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
from sylvan.methods.parts.dark_replay import with_dark_replay


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

    def training_step(self, batch: Batch) -> torch.Tensor:
        n, r = len(batch.y), self.replay_count(len(batch.y))
        matched = self.draw_replay(r)  # its stored logits are matched
        labelled = self.draw_replay(r) if matched else {}  # its stored labels are learned
        logits = self.learner(torch.cat([batch.x, matched["x"], labelled["x"]]) if matched else batch.x)
        new = logits[:n]
        loss = with_dark_replay(F.cross_entropy(new, batch.y), logits, n, matched, labelled, self.alpha, self.beta)
        self.remember({**self.stored_fields(batch), "logits": new.detach()})
        return loss
