"""Several tasks' environments as one stationary environment (`multi_task_rl`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np


class TaskMixture(gym.Env):
    """Several tasks' environments (the same spaces) as one stationary environment: each episode
    runs on a task drawn uniformly with `seed`. The first reset's seed seeds every task's
    environment (each with a seed of its own, at its first episode)."""

    def __init__(self, envs: Sequence[gym.Env], seed: int) -> None:
        self.envs = list(envs)
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.spec = self.envs[0].spec
        self.rng = np.random.default_rng(seed)
        self.task_id = 0  # the task of the current episode
        self._seeds: dict[int, int] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if seed is not None:
            self._seeds = {j: int(s) for j, s in enumerate(np.random.SeedSequence(seed).generate_state(len(self.envs)))}
        self.task_id = int(self.rng.integers(len(self.envs)))
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
