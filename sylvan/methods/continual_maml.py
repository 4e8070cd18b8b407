"""`continual_maml`: Continual-MAML (Caccia et al., "Online Fast Adaptation and Knowledge
Accumulation", NeurIPS 2020; ServiceNow/osaka, `observe_accumulate`): MAML that goes on
meta-learning in the stream, and tells task switches by its own losses.

Pre-trained as `maml` (with learned per-tensor step sizes). In the stream, fast weights adapted
from the slow ones predict each batch; learning from it: a **boundary** is detected when the
batch's loss before adaptation exceeds its loss after by more than `--boundary_threshold`
(gamma). With **prolonged adaptation** (the default), the fast weights keep adapting batch after
batch and the batches are collected, until a boundary (the fast weights then restart from the
slow ones) or more than `--collect_limit` of them: then the collected batches (the first half to
adapt on, the second to evaluate) make one meta-update of the slow weights, weighted by
1 - exp(-lambda x loss) (`--update_weight_scale`), so that a task already mastered moves them
little; the batch that showed the boundary, of the new task, is not among them. Without
(`--prolonged_adaptation false`), the fast weights are the slow ones adapted on the latest batch,
and each batch that shows no boundary makes a meta-update with the previous batch as support.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch.utils.data import DataLoader

from sylvan.methods.maml import MAML


@dataclass
class ContinualMAML(MAML):
    """MAML that keeps meta-learning in the stream, between the boundaries it detects."""

    name: ClassVar[str] = "continual_maml"
    state_attributes: ClassVar[tuple[str, ...]] = ("collected", "previous", "restart", "boundaries")

    learn_step_size: bool = True  # learn a step size per weight tensor with the slow weights
    boundary_threshold: float = 1.0  # gamma: loss before minus after adaptation that signals a new task
    update_weight_scale: float = 1.0  # lambda: a meta-update's loss is weighted by 1 - exp(-lambda x loss)
    prolonged_adaptation: bool = True  # keep adapting and collecting batches between boundaries
    # prolonged adaptation: a meta-update once more than this many batches are collected
    # (default: twice the stream's batch size, as the reference code counts)
    collect_limit: Optional[int] = None

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "boundary_threshold", "update_weight_scale")
        if self.collect_limit is not None:
            self.require_at_least(1, "collect_limit")

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.collected: list[tuple[torch.Tensor, torch.Tensor]] = []  # this task's batches so far
        self.previous: tuple[torch.Tensor, torch.Tensor] | None = None  # the latest batch (not prolonged)
        self.restart = False  # the fast weights start again from the slow ones (a boundary was seen)
        self.boundaries = 0  # boundaries detected in the stream

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        with self.run.engine.loop(len(train_data), unit="adapt", callbacks=self.run.fit_callbacks()) as loop:
            for batch in train_data:
                self.learn_from(loop, batch, *self.on_device(batch))

    def learn_from(self, loop: Any, batch: Any, x: torch.Tensor, y: torch.Tensor) -> None:
        """Learn from a batch the stream's meter has scored (predicted with `self.fast`): an
        "adapt" step of `loop` (`Engine.loop`), and a "meta_update" step where one is due."""
        with loop.step("adapt", batch, len(y)):
            fast, boundary = self.adapted(x, y)
        self.boundaries += int(boundary)
        if self.prolonged_adaptation:
            self.accumulate(loop, x, y, boundary)
        elif self.previous is not None and not boundary:
            with loop.step("meta_update") as step:
                step.loss = self.meta_update([(self.previous, (x, y))], self.loss_weight)
        self.fast, self.restart = fast, boundary
        self.previous = None if self.prolonged_adaptation else (x, y)

    def adapted(self, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, torch.Tensor], bool]:
        """The fast weights after learning from (x, y), and whether (x, y) shows a boundary: its
        loss before adaptation above its loss after by more than gamma."""
        inner, start = self.inner, self.inner.slow(detached=True)
        with torch.no_grad(), self.run.autocast():
            if self.fast is None:  # the stream's first batch
                return inner.adapt(start, x, y), False
            before = inner.loss(self.fast, x, y)
            if self.prolonged_adaptation and not self.restart:
                start = self.fast
            fast = inner.adapt(start, x, y)
            return fast, bool(before - inner.loss(fast, x, y) > self.boundary_threshold)

    def accumulate(self, loop: Any, x: torch.Tensor, y: torch.Tensor, boundary: bool) -> None:
        """Collect the batch, or meta-update on those collected (at a boundary, or past the limit)."""
        limit = 2 * len(y) if self.collect_limit is None else self.collect_limit
        if (boundary and self.collected) or len(self.collected) > limit:
            batches = self.collected if len(self.collected) > 1 else self.collected * 2
            half = (len(batches) + 1) // 2
            support, query = (tuple(torch.cat(column) for column in zip(*part))
                              for part in (batches[:half], batches[half:]))
            with loop.step("meta_update") as step:
                step.loss = self.meta_update([(support, query)], self.loss_weight)
            self.collected = []
        else:
            self.collected.append((x, y))

    def loss_weight(self, loss: torch.Tensor) -> torch.Tensor:
        return 1 - torch.exp(-self.update_weight_scale * loss)

    def runtime_stats(self) -> dict[str, float]:
        return {"boundaries_detected": float(self.boundaries)}
