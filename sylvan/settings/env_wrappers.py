"""The wrappers the RL settings hand to methods: a step budget that records the return (and, where
the environment reports one, the success) of every episode trained on, and the task id appended
to the observation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np


class TaskIdObservation(gym.ObservationWrapper):
    """Appends the one-hot task id to each (flattened) observation."""

    def __init__(self, env: gym.Env, task_id: int, nb_tasks: int) -> None:
        super().__init__(env)
        box = env.observation_space
        assert isinstance(box, gym.spaces.Box)
        low = np.concatenate([box.low.reshape(-1), np.zeros(nb_tasks)]).astype(np.float32)
        high = np.concatenate([box.high.reshape(-1), np.ones(nb_tasks)]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.one_hot = np.zeros(nb_tasks, dtype=np.float32)
        self.one_hot[task_id] = 1.0

    def observation(self, observation: Any) -> np.ndarray:
        return np.concatenate([np.asarray(observation, dtype=np.float32).reshape(-1), self.one_hot])


class BudgetSpent(RuntimeError):
    """A method stepped or reset a training environment whose step budget is spent."""


class StepBudget(gym.Wrapper):
    """The training environment a setting hands to `method.fit`: it allows `budget` steps in all
    (the last one ends its episode as truncated), seeds the first reset, and records the return
    of every episode trained on that the environment ended. A method trains until `exhausted` is true."""

    def __init__(self, env: gym.Env, budget: int, seed: int, on_episode_end: Callable[..., None] | None = None) -> None:
        """`on_episode_end(steps, episode_return, episode_length, success)` is called after each episode
        the environment ends, `steps` counting this budget's steps so far."""
        super().__init__(env)
        self.budget = budget
        self.steps = 0
        self.first_step = 0  # the stream's steps before this budget's first (its training log continues there)
        self.episode_returns: list[float] = []
        # where the environment reports success (`info["success"]`, Meta-World): whether each episode
        # succeeded at any of its steps
        self.episode_successes: list[float] = []
        self._episode_success: float | None = None
        self.on_episode_end = on_episode_end
        self._episode_return = 0.0
        self._episode_length = 0
        self._seed: int | None = seed
        self._needs_reset = True
        self._every: tuple[int, Callable[[int], None]] | None = None

    def every(self, interval: int, call: Callable[[int], None]) -> None:
        """Call `call(steps)` after every `interval`-th step but the budget's last (where the
        setting's own evaluation comes): an evaluation within the stage."""
        self._every = (interval, call)

    @property
    def exhausted(self) -> bool:
        return self.steps >= self.budget

    @property
    def steps_left(self) -> int:
        return self.budget - self.steps

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if self.exhausted:
            raise BudgetSpent(f"the training budget of {self.budget} steps is spent; stop when env.exhausted")
        if self._seed is not None:  # the first episode: the setting's seed, so that runs repeat
            seed, self._seed = self._seed, None
        self._episode_return = 0.0
        self._episode_length = 0
        self._episode_success = None
        self._needs_reset = False
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        if self.exhausted:
            raise BudgetSpent(f"the training budget of {self.budget} steps is spent; stop when env.exhausted")
        if self._needs_reset:
            raise BudgetSpent("call reset() before the first step and after an episode ends")
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        self._episode_return += float(reward)
        self._episode_length += 1
        if "success" in info:
            self._episode_success = max(self._episode_success or 0.0, float(info["success"] > 0))
        if terminated or truncated:  # an episode the environment ended (not one the budget cut)
            self.episode_returns.append(self._episode_return)
            if self._episode_success is not None:
                self.episode_successes.append(self._episode_success)
            if self.on_episode_end is not None:
                self.on_episode_end(self.steps, self._episode_return, self._episode_length, self._episode_success)
        truncated = truncated or self.exhausted
        self._needs_reset = terminated or truncated
        if self._every is not None and self.steps % self._every[0] == 0 and not self.exhausted:
            self._every[1](self.steps)
        return observation, reward, terminated, truncated, info
