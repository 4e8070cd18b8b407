"""Several tasks' environments (the same spaces) as one environment, an episode on one task at a
time: drawn at random (`TaskMixture`, `multi_task_rl`), or one task after the other
(`TaskSequence`, `continual_rl` over environments of their own)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np


class EpisodeOnATask(gym.Env):
    """Each episode runs on the task `next_task()` chooses. The first reset's seed seeds every
    task's environment, each with a seed of its own at its first episode."""

    def __init__(self, envs: Sequence[gym.Env]) -> None:
        self.envs = list(envs)
        self.observation_space, self.action_space = self.envs[0].observation_space, self.envs[0].action_space
        self.spec = self.envs[0].spec
        self.task_id = 0  # the task of the current episode
        self._seeds: dict[int, int] = {}

    def next_task(self) -> int:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if seed is not None:
            self._seeds = dict(enumerate(int(s) for s in np.random.SeedSequence(seed).generate_state(len(self.envs))))
        self.task_id = self.next_task()
        return self.envs[self.task_id].reset(seed=self._seeds.pop(self.task_id, None), options=options)

    def step(self, action: Any) -> Any:
        return self.envs[self.task_id].step(action)

    @property
    def unwrapped(self) -> gym.Env:
        """The environment of the current episode's task, unwrapped."""
        return self.envs[self.task_id].unwrapped

    def close(self) -> None:
        for env in self.envs:
            env.close()


class TaskMixture(EpisodeOnATask):
    """Every task at once, stationary: each episode on a task drawn uniformly with `seed`."""

    def __init__(self, envs: Sequence[gym.Env], seed: int) -> None:
        super().__init__(envs)
        self.rng = np.random.default_rng(seed)

    def next_task(self) -> int:
        return int(self.rng.integers(len(self.envs)))


class TaskSequence(EpisodeOnATask):
    """The tasks one after the other: task k from the first episode that starts at or after step
    k x `steps_per_task` of the stream (an episode is never cut to switch)."""

    def __init__(self, envs: Sequence[gym.Env], steps_per_task: int) -> None:
        super().__init__(envs)
        self.steps_per_task, self.steps = steps_per_task, 0

    def next_task(self) -> int:
        return min(self.steps // self.steps_per_task, len(self.envs) - 1)

    def step(self, action: Any) -> Any:
        self.steps += 1
        return super().step(action)
