"""`rehearsal`: experience replay (ER) with a rehearsal buffer (reservoir sampling by default).

Each minibatch of b new samples is joined by r samples drawn uniformly from a buffer of fixed
size; the loss is cross-entropy on all b + r; then the b new samples are offered to the buffer
(reservoir sampling: after n samples, each is stored with probability size / n). As in
Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning", and the ER baseline of
Buzzega et al. 2020 (DER).
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
class Rehearsal(ReplayMethod):
    """Experience replay. Needs no task boundaries, so it runs on every supervised setting."""

    name: ClassVar[str] = "rehearsal"
    target_setting: ClassVar[type[Setting]] = OnlineSetting

    def training_step(self, batch: Batch) -> torch.Tensor:
        replay = self.draw_replay(self.replay_count(len(batch.y)))
        # stored before the forward pass (the replay is drawn already, so this changes nothing
        # here): on data-parallel workers it sends the next step's candidates, which then travel
        # during this step's forward and backward passes
        self.remember(self.stored_fields(batch))
        x, y = batch.x, batch.y
        if replay:
            x, y = torch.cat([x, replay["x"]]), torch.cat([y, replay["y"]])
        return F.cross_entropy(self.learner(x), y)
