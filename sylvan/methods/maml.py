"""`maml`: Model-Agnostic Meta-Learning (Finn, Abbeel, Levine, ICML 2017) as OSAKA's baseline
(Caccia et al., NeurIPS 2020): meta-trained on the pre-training phase's tasks, then frozen.

Pre-training: per task, fast weights adapted from the slow weights by a few gradient steps on
half of each class's samples (the support) are scored on the other half (the query); the mean
query loss over `meta_batch_size` tasks is one Adam step of the slow weights (through the inner
steps, or around them with `--first_order`). In the stream, the slow weights stay as pre-training
left them: at each step the fast weights are the slow ones adapted on the latest batch, and
they predict the next one. Inner loops are `torch.func` (`sylvan.methods.parts.fast_weights`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader

from sylvan.errors import refuse_if_given
from sylvan.methods.core.supervised import SupervisedMethod
from sylvan.methods.parts.fast_weights import FastWeights, support_and_query
from sylvan.minibatches import float_inputs
from sylvan.settings.base import Setting
from sylvan.settings.osaka import OsakaSetting

Task = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (support, query), each (x, y)


@dataclass
class MAML(SupervisedMethod):
    """Meta-learned slow weights, adapted to each batch of the stream by fast weights."""

    name: ClassVar[str] = "maml"
    target_setting: ClassVar[type[Setting]] = OsakaSetting
    state_attributes: ClassVar[tuple[str, ...]] = ("meta_optimizer", "fast")

    lr: float = 0.001  # learning rate of the meta-updates (of the slow weights and learned step sizes)
    optimizer: str = "adam"  # of the meta-updates: adam (as the paper) or sgd
    step_size: float = 0.1  # step size of the inner loop (the initial one, where it is learned)
    inner_steps: int = 2  # gradient steps of the inner loop
    learn_step_size: bool = False  # learn a step size per weight tensor with the slow weights
    meta_batch_size: int = 4  # pre-training tasks per meta-update
    first_order: bool = False  # first-order MAML: the inner steps' gradients taken as constants
    pretraining_epochs: int = 1  # passes over the pre-training phase's tasks

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "step_size", strict=True)
        self.require_at_least(1, "inner_steps", "meta_batch_size", "pretraining_epochs")
        refuse_if_given(self, "lr_schedule", f"{self.name}'s meta-updates keep one learning rate")

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.model.to(self.run.device)
        self.inner = self.hold("fast_weights", self.fast_weights)
        # stepped at the run's precision (loss scaling under 16-mixed)
        self.meta_optimizer = self.run.setup_optimizers(self.configure_optimizer(self.inner.meta_parameters()))
        self.fast: dict[str, torch.Tensor] | None = None  # the stream's fast weights (None: the slow ones)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The declared state, the tensors of the stream (fast weights, collected batches) back on
        the run's device, where the run that never stopped holds them (a checkpoint is read on the CPU)."""
        super().load_state_dict(state)
        for name in self.declared_state():
            setattr(self, name, moved_to(getattr(self, name), self.run.device))

    def fast_weights(self) -> FastWeights:
        """The inner loop over the whole network."""
        return FastWeights(self.model, self.step_size, self.inner_steps, self.learn_step_size)

    # ----- pre-training ------------------------------------------------------------------

    def pretrain(self, train_data: DataLoader) -> None:
        """Meta-train the slow weights on the pre-training tasks (one task per batch), each
        meta-update a step of a loop on the engine (`Engine.loop`)."""
        updates = self.pretraining_epochs * math.ceil(len(train_data) / self.meta_batch_size)
        with self.run.engine.loop(updates, unit="meta_update", callbacks=self.run.fit_callbacks(False)) as loop:
            for _ in range(self.pretraining_epochs):
                tasks: list[Task] = []
                for batch in train_data:
                    x, y = self.on_device(batch)
                    support, query = support_and_query(y)
                    tasks.append(((x[support], y[support]), (x[query], y[query])))
                    if len(tasks) == self.meta_batch_size:
                        with loop.step("meta_update") as step:
                            step.loss = self.meta_update(tasks)
                        tasks = []
                if tasks:
                    with loop.step("meta_update") as step:
                        step.loss = self.meta_update(tasks)

    def meta_update(self, tasks: list[Task], weight: Callable[[torch.Tensor], torch.Tensor] | None = None
                    ) -> torch.Tensor:
        """One step of the slow weights (and learned step sizes) lowering the mean loss on each
        task's query of the slow weights adapted on its support (`tasks`: (support, query)
        pairs of (x, y)); the loss multiplied by `weight(loss)` where given. The mean loss."""
        with self.run.autocast():
            loss = torch.stack([self.inner.meta_loss(support, query, second_order=not self.first_order)
                                for support, query in tasks]).mean()
        self.meta_optimizer.zero_grad()
        self.run.backward(loss if weight is None else loss * weight(loss.detach()))
        self.meta_optimizer.step()
        return loss.detach()

    def on_device(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.run.device
        return float_inputs(batch[0]).to(device), batch[1].to(device)

    # ----- the stream --------------------------------------------------------------------

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        """Fast weights adapted from the frozen slow weights on each batch (a step of a loop on
        the engine)."""
        with self.run.engine.loop(len(train_data), unit="adapt", callbacks=self.run.fit_callbacks()) as loop:
            for batch in train_data:
                x, y = self.on_device(batch)
                with loop.step("adapt", batch, len(y)):
                    self.adapt_from_slow(x, y)

    def adapt_from_slow(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.no_grad(), self.run.autocast():
            self.fast = self.inner.adapt(self.inner.slow(detached=True), x, y)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        weights = self.inner.slow() if self.fast is None else {k: w.to(x.device) for k, w in self.fast.items()}
        return self.inner.logits(weights, x)


def moved_to(value: Any, device: torch.device) -> Any:
    """`value` (a tensor, or lists, tuples and dicts of them) with its tensors on `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: moved_to(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(moved_to(item, device) for item in value)
    return value
