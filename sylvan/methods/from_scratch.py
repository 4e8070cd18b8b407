"""`from_scratch`: after each task, retrain a fresh model on all the data seen so far.
The upper bound a continual method is compared with (and the costly baseline it replaces).
With `last_task_only` it trains once, after the last task, on every task's data: joint training,
the upper bound of the DER paper's domain-IL tables, at the cost of one training instead of T."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch.utils.data import ConcatDataset, DataLoader, Dataset

from sylvan.methods.core.supervised import SupervisedMethod
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


@dataclass
class FromScratch(SupervisedMethod):
    """Keeps every task's training set; `fit` re-initializes the network and trains it on the
    union, for the setting's number of epochs. With `last_task_only`, `fit` only keeps the task's
    training set until the setting's last training stage, so the accuracies after the earlier
    tasks are the untrained network's."""

    name: ClassVar[str] = "from_scratch"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting
    checkpoint_complete: ClassVar[bool] = True  # the finished tasks' data come back in `skip_stage`

    # train only after the last task, on all tasks' data at once (joint training; the earlier
    # tasks' evaluations are the untrained network's)
    last_task_only: bool = False

    @property
    def joint_training(self) -> bool:
        return self.last_task_only

    def configure(self, run: Any) -> None:
        super().configure(run)
        self._seen: list[Dataset] = []  # every task's training set so far

    def skip_stage(self, loaders: list[DataLoader]) -> None:
        """Resuming: the training sets of the finished tasks are the setting's, not in the
        checkpoint; they are taken again as their stages go by."""
        self._seen.extend(loader.dataset for loader in loaders)

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self._seen.append(train_data.dataset)
        if self.last_task_only and len(self._seen) < self.run.stage_count:
            return
        self.learner = self.build_learner()
        union = self.run.loader(ConcatDataset(self._seen), train_data.batch_size, seed_offset=len(self._seen))
        super().fit(union, val_data)
