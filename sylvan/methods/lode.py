"""`lode` and `lode_derpp`: loss decoupling (Liang and Li, "Loss Decoupling for Task-Agnostic
Continual Learning", NeurIPS 2023), on experience replay and on DER++.

Learning a new task with one head asks two things of the network: to tell the new classes from
the old ones (inter-task) and to tell the new classes apart (intra-task). Cross-entropy over
every class mixes the two, and the first is what pushes the old classes' logits down and the
network towards the new task. LODE splits the incoming samples' loss into the two and weights
the first down:

- intra: the cross-entropy over the classes of no finished task (the task's own, and those yet
  to come, as the authors' code takes them);
- inter: the binary cross-entropy of "new" against "old", the two scores being the log-sum-exp
  of the logits over each group;
- an incoming sample's loss is intra + rho * |C_t| / |C_old| * inter, |C_t| the classes met in
  this task so far and |C_old| those of the finished tasks (the paper's weighting, which the
  authors' code writes rho / t for equal tasks).

During the first task, with no old class, that is the plain cross-entropy. Incoming samples of
an old class (a blurry stream, the later tasks of a domain-incremental one) have nothing new to
tell apart and take the cross-entropy over every class. A class is old once a finished task
has had a sample of it: on a blurry stream, whose first task has samples of every class, every
class is old from the second task on, and the method is then its base. The incoming loss is the
mean over the minibatch. What the replayed samples learn is the base method's:

- `lode` (LODE's ER version): r samples drawn uniformly from the buffer (reservoir sampling by
  default) take the cross-entropy over every class, and the step's loss is the mean of the
  incoming and the replayed losses, as the authors' code averages them. Defaults: the authors'
  Seq-CIFAR-10 recipe for buffer 500 (lr 0.1, rho 0.1, r as many as the batch).
- `lode_derpp` (LODE on DER++): DER++'s two replayed groups, logits matched (alpha) and labels
  learned (beta), added to the incoming loss as DER++ adds them. Defaults: DER++'s (its Seq-MNIST
  arguments for buffer 200) and rho 0.5, the best of 0.1, 0.5, 1 and 2 there on one seed (the
  authors' CIFAR values, 0.05 to 0.5, were tuned with DER++'s CIFAR arguments).

`--decouple_loss false` gives the coupled loss of each base (the incoming samples' cross-entropy
over every class): the paper's ablation. Needs task boundaries, to know which classes are old.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from sylvan.methods import derpp
from sylvan.methods.core.replay import ReplayMethod
from sylvan.methods.core.supervised import Batch
from sylvan.methods.der import DER
from sylvan.methods.parts.decoupled_loss import (
    check_decoupling,
    hold_decoupled_loss,
)
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

    def configure(self, setting: Any) -> None:
        super().configure(setting)
        self.decoupled_loss = hold_decoupled_loss(self)

    def incoming_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.decoupled_loss(logits, batch)

    def training_step(self, batch: Batch) -> torch.Tensor:
        replay = self.draw_replay(self.replay_count(len(batch.y)))
        self.remember(self.stored_fields(batch))  # before the forward pass: the next step's candidates travel during it
        x = torch.cat([batch.x, replay["x"]]) if replay else batch.x
        logits = self.learner(x)
        loss = self.incoming_loss(logits[: len(batch.y)], batch)
        if replay:
            loss = (loss + F.cross_entropy(logits[len(batch.y) :], replay["y"])) / 2
        return loss


@dataclass
class LODEDERPlusPlus(DER):
    """LODE on DER++: the incoming samples' decoupled loss, plus DER++'s logit matching and
    label learning on two replayed groups (`sylvan.methods.derpp`)."""

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

    def configure(self, setting: Any) -> None:
        super().configure(setting)
        self.decoupled_loss = hold_decoupled_loss(self)

    def incoming_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.decoupled_loss(logits, batch)

    replay_draws = derpp.two_draws
    replay_terms = derpp.with_labelled_group
    replay_loss = derpp.matched_then_labelled_loss
