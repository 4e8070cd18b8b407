"""`lode` and `lode_derpp`: loss decoupling (Liang and Li, "Loss Decoupling for Task-Agnostic
Continual Learning", NeurIPS 2023), on experience replay and on DER++.

How it follows its paper, and what it adds: docs/method-notes.md, section lode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from sylvan.methods.core.replay import ReplayMethod
from sylvan.methods.core.supervised import Batch
from sylvan.methods.der import DER
from sylvan.methods.parts.dark_replay import with_dark_replay
from sylvan.methods.parts.decoupled_loss import DecoupledLoss, check_decoupling
from sylvan.methods.parts.seen_classes import SeenClasses
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


@dataclass
class LODE(ReplayMethod):
    """LODE (ER): the incoming samples' decoupled loss and the replayed samples' cross-entropy
    over every class, averaged."""

    name: ClassVar[str] = "lode"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting  # the old classes are the finished tasks'

    lr: float = 0.1  # learning rate
    rho: float = 0.1  # weight of the inter-task (new against old) term, times |classes of the task| / |old classes|
    decouple_loss: bool = True  # false: the incoming samples' cross-entropy over every class (the coupled baseline)

    checkpoint_complete = True  # its seen classes are a part, whose state the method's checkpoint holds

    def validate(self) -> None:
        super().validate()
        check_decoupling(self)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.seen_classes = self.hold("seen_classes", lambda: SeenClasses(self.run.num_classes))
        self.decoupled_loss = DecoupledLoss(self.seen_classes, self.rho, self.decouple_loss)

    def training_step(self, batch: Batch) -> torch.Tensor:
        replay = self.draw_replay(self.replay_count(len(batch.y)))
        self.remember(self.stored_fields(batch))  # before the forward pass: the next step's candidates travel during it
        x = torch.cat([batch.x, replay["x"]]) if replay else batch.x
        logits = self.learner(x)
        loss = self.decoupled_loss(logits[: len(batch.y)], batch)
        if replay:
            loss = (loss + F.cross_entropy(logits[len(batch.y) :], replay["y"])) / 2
        return loss


@dataclass
class LODEDERPlusPlus(DER):
    """LODE on DER++: the incoming samples' decoupled loss, plus DER++'s logit matching and
    label learning on two replayed groups (as `sylvan.methods.derpp`)."""

    name: ClassVar[str] = "lode_derpp"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    replay_size: int = 128  # r: samples in each of the two replayed groups (0: as many as the batch size)
    beta: float = 1.0  # weight of the cross-entropy on the second replayed group
    rho: float = 0.5  # weight of the inter-task (new against old) term, times |classes of the task| / |old classes|
    decouple_loss: bool = True  # false: the incoming samples' cross-entropy over every class (the coupled baseline)

    checkpoint_complete = True  # its seen classes are a part, whose state the method's checkpoint holds

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "beta")
        check_decoupling(self)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.seen_classes = self.hold("seen_classes", lambda: SeenClasses(self.run.num_classes))
        self.decoupled_loss = DecoupledLoss(self.seen_classes, self.rho, self.decouple_loss)

    def replay_draws(self, batch_size: int) -> tuple[int, ...]:
        """Two independent groups of r a step, as DER++."""
        return (self.replay_count(batch_size),) * 2

    def training_step(self, batch: Batch) -> torch.Tensor:
        n, r = len(batch.y), self.replay_count(len(batch.y))
        matched = self.draw_replay(r)  # its stored logits are matched
        labelled = self.draw_replay(r) if matched else {}  # its stored labels are learned
        logits = self.learner(torch.cat([batch.x, matched["x"], labelled["x"]]) if matched else batch.x)
        new = logits[:n]
        loss = with_dark_replay(self.decoupled_loss(new, batch), logits, n, matched, labelled, self.alpha, self.beta)
        self.remember({**self.stored_fields(batch), "logits": new.detach()})
        return loss
