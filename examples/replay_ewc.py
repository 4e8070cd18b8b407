"""Two methods' ideas in one file: experience replay with an EWC penalty.

`rehearsal` is the base (its buffer, its replayed minibatch, its cross-entropy over both); the EWC
penalty comes from the parts `ewc` is made of (the diagonal Fisher of `sylvan.methods.parts.importance`,
the importance-weighted distance of `sylvan.methods.core.regularization`), added to the replay's
loss. Because it needs the end of each task (the Fisher is measured then), it targets
`class_incremental`, and runs on every setting below it.

    sylvan --plugin examples/replay_ewc.py --setting class_incremental --method replay_ewc --ewc_lambda 50
"""

from dataclasses import dataclass
from typing import ClassVar

import torch

from sylvan.methods import Batch, Rehearsal
from sylvan.methods.core.regularization import stable_importance, weighted_squared_distance
from sylvan.methods.core.supervised import dataset_tensors, evaluating
from sylvan.methods.parts.importance import diagonal_fisher
from sylvan.settings import ClassIncrementalSetting


@dataclass
class ReplayEWC(Rehearsal):
    """Experience replay whose loss adds lambda * sum_i F_i (w_i - w*_i)^2 once a task has ended."""

    name: ClassVar[str] = "replay_ewc"
    target_setting: ClassVar[type] = ClassIncrementalSetting
    state_attributes: ClassVar[tuple[str, ...]] = ("fisher", "anchor")  # saved beside rehearsal's state

    ewc_lambda: float = 90.0  # strength of the EWC penalty

    def configure(self, run):
        super().configure(run)
        self.fisher = self.anchor = None  # summed over the tasks so far; the weights at the last task's end
        self._task_data = ()  # the task's training data, while it trains

    def fit(self, train_data, val_data=None):
        self._task_data = dataset_tensors(train_data.dataset)
        super().fit(train_data, val_data)

    def training_step(self, batch: Batch) -> torch.Tensor:
        loss = super().training_step(batch)  # cross-entropy on the new and the replayed samples
        if self.fisher is not None:  # each importance at most what an SGD step stays stable with, as ewc's
            most = stable_importance(self.optimizer, self.current_lr, self.ewc_lambda)
            loss = loss + self.ewc_lambda * weighted_squared_distance(self.model, self.fisher, self.anchor, most)
        return loss

    def on_task_end(self, task_id):
        super().on_task_end(task_id)
        x, y = self._task_data[:2]
        self._task_data = ()
        with evaluating(self.model):
            fisher = diagonal_fisher(self.model, x, y)
        self.fisher = fisher if self.fisher is None else {n: self.fisher[n].to(f.device) + f for n, f in fisher.items()}
        self.anchor = {name: weight.detach().clone() for name, weight in self.model.named_parameters()}
