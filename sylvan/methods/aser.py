"""`aser`: adversarial Shapley value experience replay (Shim, Mai, Jeong, Sanner, Kim & Jang,
"Online Class-Incremental Continual Learning with Adversarial Shapley Value", AAAI 2021).

How it follows its paper, and what it adds: docs/method-notes.md, section aser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from sylvan.buffers.shapley import (
    ASER_KINDS,
    knn_shapley_values,
    per_class_positions,
    positions_left,
    replay_scores,
)
from sylvan.errors import unknown_name
from sylvan.methods.core.replay import ReplayMethod
from sylvan.methods.core.supervised import Batch
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting


@dataclass
class ASER(ReplayMethod):
    """Experience replay of the candidates with the best adversarial Shapley values, from a
    memory kept by Shapley values."""

    name: ClassVar[str] = "aser"
    target_setting: ClassVar[type[Setting]] = OnlineSetting  # needs no boundaries: runs everywhere

    lr: float = 0.1  # learning rate
    replay_size: int = 10  # r: samples replayed with each minibatch (0: as many as the batch size)
    # which samples the buffer keeps: aser (by KNN Shapley values), reservoir, class_balanced, prs, gdumb, herding,
    # fifo, gss or ring
    buffer_policy: str = "aser"
    candidates: int = 50  # buffer samples drawn at each step, of which some compete to be replayed and some judge
    aser_kind: str = "asvm"  # how candidates are scored: asvm, asv or neg_sv
    aser_neighbours: int = 5  # K, the neighbours of the KNN Shapley values (the aser policy's too)
    # stored samples of each class that judge (their number x the classes compete; the aser policy's too)
    aser_samples_per_class: int = 2

    replay_uses_features: ClassVar[bool] = True

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "candidates", "aser_neighbours", "aser_samples_per_class")
        if self.aser_kind not in ASER_KINDS:
            raise unknown_name("ASER kind", self.aser_kind, ASER_KINDS)

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.require_candidates_for_replay(setting, self.candidates)

    def replay_draws(self, batch_size: int) -> tuple[int, ...]:
        return (self.candidates,)

    def replayed_positions(self, pool: dict[str, torch.Tensor], batch: Batch, count: int) -> torch.Tensor:
        """Which samples of `pool` (a uniform draw from the buffer, in random order) the step
        replays: the `count` best by `replay_scores`, or the first `count` while the buffer
        has not yet turned a sample away."""
        if self.replay.seen <= self.replay.capacity:
            return torch.arange(min(count, len(pool["y"])))
        labels = pool["y"].cpu()
        competing = per_class_positions(labels, self.aser_samples_per_class)
        others = positions_left(len(labels), competing)
        judging = others[per_class_positions(labels[others], self.aser_samples_per_class)]
        chosen = torch.cat([competing, judging]).to(pool["y"].device)
        features = self.stored_features(torch.cat([batch.x, pool["x"][chosen]]))
        new, competed = len(batch.y), len(competing)
        candidates, candidate_labels = features[new:new + competed], pool["y"][chosen[:competed]]
        adversarial = knn_shapley_values(features[:new], batch.y, candidates, candidate_labels, self.aser_neighbours)
        cooperative = knn_shapley_values(
            features[new + competed:], pool["y"][chosen[competed:]], candidates, candidate_labels, self.aser_neighbours
        )
        scores = replay_scores(adversarial, cooperative, self.aser_kind)
        return competing[scores.cpu().argsort(descending=True, stable=True)[:count]]

    def training_step(self, batch: Batch) -> torch.Tensor:
        pool = self.draw_replay(self.candidates, augment=False)  # only the replayed few are augmented
        self.remember(self.stored_fields(batch))
        loss = F.cross_entropy(self.learner(batch.x), batch.y)
        if pool:
            chosen = self.replayed_positions(pool, batch, self.replay_count(len(batch.y))).to(pool["y"].device)
            x = pool["x"][chosen]
            if self.augmentation is not None:
                x = self.augment_inputs(x)
            loss = loss + F.cross_entropy(self.learner(x), pool["y"][chosen])
        return loss
