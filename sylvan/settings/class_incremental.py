"""Class-incremental learning: tasks of new classes, boundaries known, several epochs each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sylvan.errors import ConfigurationError
from sylvan.run.task_data import TaskData
from sylvan.settings.assumptions import TaskBoundaries
from sylvan.settings.online import OnlineSetting


@dataclass
class ClassIncrementalSetting(TaskBoundaries, OnlineSetting):
    """Each task brings new classes. The method is told when a task starts and ends (and its
    id, at training time), trains on it for several epochs, and is evaluated after every task on
    all tasks with one head over all classes and no task label."""

    name: ClassVar[str] = "class_incremental"
    task_labels_at_train: ClassVar[bool] = True
    single_pass: ClassVar[bool] = False

    batch_size: int = 16  # samples per training minibatch
    epochs: int = 5  # training epochs over each task's data

    def validate(self) -> None:
        super().validate()
        if self.epochs < 1:
            raise ConfigurationError(f"--epochs must be >= 1, got {self.epochs}")

    @property
    def epochs_per_task(self) -> int:
        return self.epochs

    def nb_stages(self, tasks: list[TaskData]) -> int:
        return len(tasks)

    def training_stages(self, tasks: list[TaskData]):
        """One stage per task: that task's training set, shuffled each epoch with the seed."""
        for task in tasks:
            dataset = task.train_dataset(self.task_labels_at_train)
            yield [self.train_loader(dataset, shuffle=True, offset=task.task_id)]

