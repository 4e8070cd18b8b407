"""`rehearsal`: experience replay (ER) with a rehearsal buffer (reservoir sampling by default).

Each minibatch of b new samples is joined by r samples drawn uniformly from a buffer of fixed
size; the loss is cross-entropy on all b + r; then the b new samples are offered to the buffer
(reservoir sampling: after n samples, each is stored with probability size / n). As in
Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning", and the ER baseline of
Buzzega et al. 2020 (DER).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from sylvan.buffers.global_replay import GlobalReplay
from sylvan.methods.replay import ReplayMethod
from sylvan.methods.supervised import Batch
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting


@dataclass
class Rehearsal(ReplayMethod):
    """Experience replay. Needs no task boundaries, so it runs on every supervised setting."""

    name: ClassVar[str] = "rehearsal"
    target_setting: ClassVar[type[Setting]] = OnlineSetting

    def configure(self, setting: Any) -> None:
        super().configure(setting)
        self._global_replay = None

    def global_replay(self, setting: Any) -> GlobalReplay:
        """On data-parallel settings, the distributed rehearsal strategy replays from the union
        of every worker's buffer (this method's buffer is the local one) instead of the method."""
        if self._global_replay is None:
            featurize = self.stored_features if self.store_features else None
            self._global_replay = GlobalReplay(
                self.buffer, self.replay_count(setting.batch_size), synchronous=setting.replay_sync,
                seed=setting.seed, featurize=featurize,
            )
        return self._global_replay

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._global_replay is not None:
            state["global_replay"] = self._global_replay.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)  # the local buffer first: the global replay's blocks take its shapes
        if "global_replay" in state:
            self.global_replay(self.setting).load_state_dict(state["global_replay"])

    def runtime_stats(self) -> dict[str, float]:
        """On data-parallel settings, what the distributed replay costs the training loop."""
        replay = getattr(self, "_global_replay", None)
        return {} if replay is None else replay.timings()

    def training_step(self, batch: Batch) -> torch.Tensor:
        if self._global_replay is not None:  # the strategy already joined the replay
            return F.cross_entropy(self.learner(batch.x), batch.y)
        replay = self.draw_replay(self.replay_count(len(batch.y)))
        x, y = batch.x, batch.y
        if replay:
            x, y = torch.cat([x, replay["x"]]), torch.cat([y, replay["y"]])
        logits = self.learner(x)
        self.remember(batch.fields())
        return F.cross_entropy(logits, y)
