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

    def training_step(self, batch: Batch) -> torch.Tensor:
        replay = self.draw_replay(self.replay_count(len(batch.y)))
        logits = self.learner(torch.cat([batch.x, replay["x"]]) if replay else batch.x)
        new = logits[: len(batch.y)]
        loss = F.cross_entropy(new, batch.y)
        if replay and self.alpha > 0:
            loss = loss + self.alpha * F.mse_loss(logits[len(batch.y) :], replay["logits"])
        self.remember({**self.stored_fields(batch), "logits": new.detach()})
        return loss
