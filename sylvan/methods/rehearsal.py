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

from sylvan.buffers import BUFFER_POLICIES, RETRIEVALS, make_buffer, needs_features
from sylvan.buffers.distributed import GlobalReplay
from sylvan.errors import ConfigurationError, unknown_name
from sylvan.methods.learner import Batch, SupervisedMethod
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting


@dataclass
class Rehearsal(SupervisedMethod):
    """Experience replay. Needs no task boundaries, so it runs on every supervised setting."""

    name: ClassVar[str] = "rehearsal"
    target_setting: ClassVar[type[Setting]] = OnlineSetting

    buffer_size: int = 200  # capacity of the rehearsal buffer, in samples
    replay_size: int = 0  # r: samples replayed with each minibatch (0: as many as the batch size)
    buffer_policy: str = "reservoir"  # which samples the buffer keeps: reservoir, class_balanced, prs, gdumb, herding
    buffer_retrieval: str = "uniform"  # which stored samples are replayed: uniform or grasp

    def validate(self) -> None:
        super().validate()
        if self.buffer_size < 0:
            raise ConfigurationError(f"--buffer_size must be >= 0, got {self.buffer_size}")
        if self.replay_size < 0:
            raise ConfigurationError(f"--replay_size must be >= 0, got {self.replay_size}")
        if self.buffer_policy not in BUFFER_POLICIES:
            raise unknown_name("buffer policy", self.buffer_policy, list(BUFFER_POLICIES))
        if self.buffer_retrieval not in RETRIEVALS:
            raise unknown_name("buffer retrieval", self.buffer_retrieval, list(RETRIEVALS))

    def configure(self, setting: Any) -> None:
        super().configure(setting)
        self._global_replay = None
        self.buffer = make_buffer(
            self.buffer_policy, self.buffer_size, seed=setting.seed, retrieval=self.buffer_retrieval
        )
        self.store_features = needs_features(self.buffer_policy, self.buffer_retrieval)
        if self.store_features and not hasattr(self.model, "features"):
            raise ConfigurationError(
                f"--buffer_policy {self.buffer_policy} / --buffer_retrieval {self.buffer_retrieval} need a "
                "backbone with a `features` module (all built-in backbones have one)"
            )

    def replay_count(self, batch_size: int) -> int:
        return self.replay_size or batch_size

    def global_replay(self, setting: Any) -> GlobalReplay:
        """On data-parallel settings, the distributed rehearsal strategy replays from the union
        of every worker's buffer (this method's buffer is the local one) instead of the method."""
        if self._global_replay is None:
            featurize = (lambda x: self.model.features(x)) if self.store_features else None
            self._global_replay = GlobalReplay(
                self.buffer, self.replay_count(setting.batch_size), synchronous=setting.replay_sync,
                seed=setting.seed, featurize=featurize,
            )
        return self._global_replay

    def training_step(self, batch: Batch) -> torch.Tensor:
        if self._global_replay is not None:  # the strategy already joined the replay
            return F.cross_entropy(self.learner(batch.x), batch.y)
        new = batch.fields()
        replay = self.buffer.sample(self.replay_count(len(batch.y)))
        if replay:
            x = torch.cat([batch.x, replay["x"]])
            y = torch.cat([batch.y, replay["y"]])
        else:
            x, y = batch.x, batch.y
        if self.store_features:  # one forward pass gives the loss and the new samples' features
            features = self.model.features(x)
            loss = F.cross_entropy(self.model.classifier(features), y)
            new["features"] = features[: len(batch.y)].detach()
        else:
            loss = F.cross_entropy(self.learner(x), y)
        self.buffer.add(**new)
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "buffer": self.buffer.state_dict()}
