"""`er_ace`: experience replay with asymmetric cross-entropy (Caccia et al., "New Insights on
Reducing Abrupt Representation Change in Online Continual Learning", ICLR 2022).

The incoming samples' cross-entropy is computed over the classes present in their minibatch
only, so that learning new classes does not push the old classes' logits down; the replayed
samples' cross-entropy is over every class. Needs no task boundaries. Defaults: the paper's
online setting (lr 0.1, r 10, batch 10).
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
class ERACE(ReplayMethod):
    """ER-ACE: asymmetric cross-entropy for incoming and replayed samples."""

    name: ClassVar[str] = "er_ace"
    target_setting: ClassVar[type[Setting]] = OnlineSetting  # needs no boundaries: runs everywhere

    lr: float = 0.1  # learning rate
    replay_size: int = 10  # r: samples replayed with each minibatch (0: as many as the batch size)

    def training_step(self, batch: Batch) -> torch.Tensor:
        replay = self.draw_replay(self.replay_count(len(batch.y)))
        self.remember(self.stored_fields(batch))  # before the forward pass: the next step's candidates travel during it
        x = torch.cat([batch.x, replay["x"]]) if replay else batch.x
        logits = self.learner(x)
        new = logits[: len(batch.y)]
        present = torch.zeros(new.shape[1], dtype=torch.bool, device=new.device)
        present[batch.y] = True
        loss = F.cross_entropy(new.masked_fill(~present, float("-inf")), batch.y)
        if replay:
            loss = loss + F.cross_entropy(logits[len(batch.y) :], replay["y"])
        return loss
