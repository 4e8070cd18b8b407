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


class VectorBudget(gym.vector.VectorEnv):
    """The training environment of a method that steps `len(copies)` copies of a stage's
    environment together (gymnasium's vector API): each copy a `StepBudget` of an equal share of
    the stage's steps, seeded apart, all stepped at once with an action each. A copy whose episode
    ends is reset in the same step (`autoreset_mode` same-step): the observation it returns is the
    new episode's first, its last one is `infos["final_obs"][k]` (`infos["_final_obs"][k]` true);
    not after the budget's last step. `steps` counts the environment steps of all copies."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, copies: list[StepBudget]) -> None:
        self.envs, self.num_envs = copies, len(copies)
        self.single_observation_space = copies[0].observation_space
        self.single_action_space = copies[0].action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.first_step = 0
        self._every: tuple[int, Callable[[int], None]] | None = None

    @property
    def budget(self) -> int:
        return sum(copy.budget for copy in self.envs)

    @property
    def steps(self) -> int:
        return sum(copy.steps for copy in self.envs)

    @property
    def exhausted(self) -> bool:
        return self.envs[0].exhausted  # the copies' shares are equal and stepped together

    @property
    def steps_left(self) -> int:
        return self.budget - self.steps

    @property
    def episode_returns(self) -> list[float]:
        return [value for copy in self.envs for value in copy.episode_returns]

    @property
    def episode_successes(self) -> list[float]:
        return [value for copy in self.envs for value in copy.episode_successes]

    def every(self, interval: int, call: Callable[[int], None]) -> None:
        """`StepBudget.every` over all copies' steps (`interval` a multiple of the copies)."""
        self._every = (interval, call)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        """Each copy's first observation (each copy seeded by its budget)."""
        observations = [copy.reset(options=options)[0] for copy in self.envs]
        return np.stack(observations), {}

    def step(self, actions: Any) -> Any:
        rows = [copy.step(action) for copy, action in zip(self.envs, actions)]
        observations = [row[0] for row in rows]
        final = np.zeros(self.num_envs, dtype=bool)
        final_obs = np.empty(self.num_envs, dtype=object)
        for k, (copy, (observation, _, terminated, truncated, _)) in enumerate(zip(self.envs, rows)):
            if (terminated or truncated) and not copy.exhausted:
                final[k], final_obs[k] = True, observation
                observations[k] = copy.reset()[0]
        infos: dict[str, Any] = {"final_obs": final_obs, "_final_obs": final} if final.any() else {}
        if self._every is not None and self.steps % self._every[0] == 0 and not self.exhausted:
            self._every[1](self.steps)
        return (np.stack(observations), np.array([row[1] for row in rows], dtype=np.float64),
                np.array([row[2] for row in rows]), np.array([row[3] for row in rows]), infos)

    def close(self, **kwargs: Any) -> None:
        for copy in self.envs:
            copy.close()
