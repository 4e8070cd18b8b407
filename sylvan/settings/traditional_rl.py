"""Traditional reinforcement learning: one stationary task, the single-task reference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sylvan.errors import ConfigurationError
from sylvan.settings.incremental_rl import IncrementalRLSetting


@dataclass
class TraditionalRLSetting(IncrementalRLSetting):
    """One task, stationary: the environment of task `--task` of the sequence that the other RL
    settings make with the same options (`--nb_tasks`, `--min_scale`, `--max_scale`, `--seed`),
    trained on alone for `--steps_per_task` steps and evaluated on it. The reference a task's
    forward transfer is measured against: a run here of task k is what learning task k from
    scratch gives."""

    name: ClassVar[str] = "traditional_rl"
    makes_references: ClassVar[bool] = True

    task: int = 0  # the task of the sequence to train on (0: the environment as defined)

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.task < self.nb_tasks:
            raise ConfigurationError(f"--task must be from 0 to --nb_tasks - 1 = {self.nb_tasks - 1}, got {self.task}")

    def stream_task_ids(self) -> list[int]:
        """The chosen task alone."""
        return [self.task]
