"""Incremental reinforcement learning: discrete tasks, with boundaries known at training time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sylvan.settings.assumptions import TaskBoundaries
from sylvan.settings.continual_rl import ContinualRLSetting, EpisodeLog
from sylvan.settings.env_wrappers import StepBudget


@dataclass
class IncrementalRLSetting(TaskBoundaries, ContinualRLSetting):
    """The environment's attribute values change from one task to the next, all at once; the
    method is told when a task starts and ends (not which one it is), trains on each task for
    `--steps_per_task` steps and is evaluated on every task after each."""

    name: ClassVar[str] = "incremental_rl"

    def nb_stages(self) -> int:
        return self.stream_tasks

    def training_env(self, stage: int, on_episode_end: EpisodeLog | None = None,
                     copy: tuple[int, int] = (0, 1)) -> StepBudget:
        """Task `stage`'s environment, for its steps (copy k of n: a nth of them)."""
        return self.budgeted(self.task_env(stage), self.steps_per_task // copy[1], stage, on_episode_end, copy[0])


