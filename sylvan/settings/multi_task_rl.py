"""Multi-task reinforcement learning: every task at once, the upper bound of the branch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sylvan.settings.continual_rl import EpisodeLog, derived_seed
from sylvan.settings.env_wrappers import StepBudget
from sylvan.settings.task_incremental_rl import TaskIncrementalRLSetting
from sylvan.settings.task_mixture import TaskMixture

MIXTURE = 3  # the purpose of the seed of the mixture's draws of tasks (after training and evaluation)


@dataclass
class MultiTaskRLSetting(TaskIncrementalRLSetting):
    """No non-stationarity left: one training stage of `--nb_tasks` x `--steps_per_task` steps,
    each episode on a task drawn uniformly (with the seed), the one-hot task id in every
    observation; then one evaluation on every task. Continual World's multi-task SAC is this
    setting's `sac`."""

    name: ClassVar[str] = "multi_task_rl"

    def nb_stages(self) -> int:
        return 1

    def planned_stages(self) -> int:
        return 1

    def stage_task_label(self, stage: int) -> int | None:
        """None: the one stage holds every task at once."""
        return None

    def task_spans(self) -> None:
        """None: every task trains over the whole stream."""
        return None

    def training_env(self, stage: int, on_episode_end: EpisodeLog | None = None,
                     copy: tuple[int, int] = (0, 1)) -> StepBudget:
        """Every task's environment, an episode at a time, each drawn uniformly (copy k of n: its
        own draws, a nth of the steps)."""
        envs = [self.task_env(task_id) for task_id in range(self.nb_tasks)]
        mixture = TaskMixture(envs, derived_seed(self.seed, MIXTURE, stage, *([copy[0]] if copy[0] else [])))
        return self.budgeted(mixture, self.total_steps // copy[1], stage, on_episode_end, copy[0])
