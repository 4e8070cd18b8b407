"""Multi-task learning: all tasks' data at once, shuffled together; the joint upper bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch.utils.data import ConcatDataset

from sylvan.run.task_data import TaskData
from sylvan.settings.task_incremental import TaskIncrementalSetting


@dataclass
class MultiTaskSetting(TaskIncrementalSetting):
    """No non-stationarity left: one training stage over the union of every task's data
    (with task labels), shuffled, then one evaluation on every task."""

    name: ClassVar[str] = "multi_task"

    def nb_stages(self, tasks: list[TaskData]) -> int:
        return 1

    def planned_stages(self) -> int:
        return 1

    def training_stages(self, tasks: list[TaskData]):
        union = ConcatDataset([t.train_dataset(self.task_labels_at_train) for t in tasks])
        yield [self.train_loader(union, shuffle=True)]

    def stage_task_label(self, stage: int) -> int | None:
        """None: the one stage holds every task at once."""
        return None
