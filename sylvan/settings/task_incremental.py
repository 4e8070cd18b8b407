"""Task-incremental learning: class-incremental with the task label given at test time too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sylvan.settings.assumptions import TaskLabels
from sylvan.settings.class_incremental import ClassIncrementalSetting


@dataclass
class TaskIncrementalSetting(TaskLabels, ClassIncrementalSetting):
    """As class-incremental, but every batch and every `predict` call carries the task label,
    so a method may restrict its answer to the classes of that task (e.g. one head per task)."""

    name: ClassVar[str] = "task_incremental"
