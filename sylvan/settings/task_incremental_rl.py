"""Task-incremental reinforcement learning: the task id is part of the observation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sylvan.settings.assumptions import TaskLabels
from sylvan.settings.incremental_rl import IncrementalRLSetting


@dataclass
class TaskIncrementalRLSetting(TaskLabels, IncrementalRLSetting):
    """As `incremental_rl`, and every observation ends with the one-hot id of its task, at
    training and at evaluation (where `predict` is also given the task labels)."""

    name: ClassVar[str] = "task_incremental_rl"
