"""The training data of the tasks a run has finished, where its setting keeps them available to
the method (`past_data_available`: the stream of datasets, as NEVIS'22 assumes): a method may
revisit them, never a task to come."""

from __future__ import annotations

import torch
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from sylvan.minibatches import minibatch_loader
from sylvan.run.task_data import TaskData


class PastTasks:
    """The training sets of the tasks before the one being trained (`RunContext.past_tasks`),
    with their task labels. Their inputs come as the current task's do: float32."""

    def __init__(self, tasks: list[TaskData], seed: int = 0) -> None:
        self._tasks = list(tasks)
        self.seed = seed

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def task_ids(self) -> list[int]:
        return [task.task_id for task in self._tasks]

    def dataset(self, task_ids: list[int] | None = None) -> TensorDataset | ConcatDataset:
        """The training samples (x, y, t) of the past tasks `task_ids` (default: all of them)."""
        chosen = self._tasks if task_ids is None else [self._task(task_id) for task_id in task_ids]
        if not chosen:
            raise ValueError("there is no past task yet: the first task is being trained")
        parts = [task.train_dataset(with_task_labels=True) for task in chosen]
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def loader(self, batch_size: int, task_ids: list[int] | None = None, shuffle: bool = True) -> DataLoader:
        """Minibatches (x, y, t) of the past tasks `task_ids` (default: all), shuffled with the
        run's seed; x as float32 (uint8 pixels k as k / 255)."""
        generator = torch.Generator().manual_seed(self.seed * 1000 + 999)
        return minibatch_loader(self.dataset(task_ids), batch_size, shuffle, generator)

    def _task(self, task_id: int) -> TaskData:
        for task in self._tasks:
            if task.task_id == task_id:
                return task
        raise ValueError(f"task {task_id} is not a past task; the past tasks are {self.task_ids}")
