"""`der`: dark experience replay (Buzzega et al., "Dark Experience for General Continual
Learning: a Strong, Simple Baseline", NeurIPS 2020).

The buffer keeps, with each sample, the logits the network gave it when it arrived; each
minibatch of new samples is joined by r stored ones, and the loss adds alpha times the mean
squared error between the network's current logits for them and the stored logits. Needs no task
boundaries. Defaults: the paper's Seq-MNIST hyperparameters for buffer 200 (lr 0.03, alpha 0.2,
r 10, batch 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from sylvan.methods.core.replay import ReplayMethod
from sylvan.methods.core.supervised import Batch
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting


@dataclass
class DER(ReplayMethod):
    """Dark experience replay: logit matching on replayed samples."""

    name: ClassVar[str] = "der"
    target_setting: ClassVar[type[Setting]] = OnlineSetting

    lr: float = 0.03  # learning rate
    replay_size: int = 10  # r: samples replayed with each minibatch (0: as many as the batch size)
    alpha: float = 0.2  # weight of the logit-matching (MSE) loss on replayed samples

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "alpha")

    # DER++ (and LODE's DER++) learn the labels of a second, independent replayed group
    labels_second_group: ClassVar[bool] = False

    def replay_draws(self, batch_size: int) -> tuple[int, ...]:
        """One group of r a step; two independent ones where the labels of a second are learned."""
        return (self.replay_count(batch_size),) * (2 if self.labels_second_group else 1)

    def replay_terms(self, batch: Batch) -> list[tuple[float, dict[str, torch.Tensor]]]:
        """The replayed groups of this step, each with its own draw from the buffer: DER draws
        one group (its logits are matched), DER++ a second one (its labels are learned, weight
        `beta`)."""
        replay = self.draw_replay(self.replay_count(len(batch.y)))
        if not replay:
            return []
        groups = [(self.alpha, replay)]
        if self.labels_second_group:
            groups.append((self.beta, self.draw_replay(self.replay_count(len(batch.y)))))
        return groups

    def replay_loss(self, index: int, logits: torch.Tensor, replay: dict[str, torch.Tensor]) -> torch.Tensor:
        """The first group's logit matching; a second group's cross-entropy with its labels."""
        if index == 0:
            return F.mse_loss(logits, replay["logits"])
        return F.cross_entropy(logits, replay["y"])

    def incoming_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The minibatch's own loss (`logits`: the network's for its samples): their cross-entropy."""
        return F.cross_entropy(logits, batch.y)

    def training_step(self, batch: Batch) -> torch.Tensor:
        groups = self.replay_terms(batch)
        x = torch.cat([batch.x, *(replay["x"] for _, replay in groups)])
        logits = self.learner(x)
        new = logits[: len(batch.y)]
        loss = self.incoming_loss(new, batch)
        start = len(batch.y)
        for index, (weight, replay) in enumerate(groups):
            count = len(replay["y"])
            if weight > 0:
                loss = loss + weight * self.replay_loss(index, logits[start : start + count], replay)
            start += count
        self.remember({**self.stored_fields(batch), "logits": new.detach()})
        return loss
