"""Continual reinforcement learning: a gymnasium environment whose dynamics drift smoothly.

`ContinualRLSetting` is the root of the reinforcement-learning branch. A task is a set of values
of the environment's physical attributes (`environments.task_attributes`); here the dynamics
move smoothly from the first task's values through every task's to the last one's, with no
boundary the method is told of. The method trains on the stream through `fit(env)` (a
`StepBudget`: it steps the environment until `env.exhausted`) and is evaluated by greedy
episodes on each task's environment. With discrete actions, `predict(observations)` scores each
action and the setting takes the best; with continuous ones (a bounded vector), `predict`
returns the action itself, which the setting clips to the bounds. A method declares which kinds
it handles (`action_spaces`). The accuracy matrix of the supervised branch holds mean episode
returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, List, Optional

import gymnasium as gym
import numpy as np
import torch

from sylvan.errors import ConfigurationError
from sylvan.registry import METHODS
from sylvan.run.budget import MemoryBudgetOptions
from sylvan.settings.base import ProgressBarOption, Setting, accelerator_device, check_accelerator, check_precision
from sylvan.settings.environments import (
    DEFAULT_VARIED_ATTRIBUTES,
    AttributeDrift,
    StepBudget,
    TaskIdObservation,
    default_attributes,
    make_env,
    set_attributes,
    task_attributes,
)


def derived_seed(*parts: int) -> int:
    """A 32-bit seed for one purpose of a run (training or evaluation, task, episode)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


TRAINING, EVALUATION = 1, 2  # the purposes derived seeds are drawn for
EpisodeLog = Callable[[int, float, int], None]  # on_episode_end(steps, episode_return, episode_length)


def action_spaces_of(method: Any) -> tuple[str, ...]:
    """The kinds of actions an RL method (or method class) handles, from its `action_spaces`:
    "discrete", "continuous" or both. A method that does not say scores discrete actions, as
    every RL method did before continuous actions were supported. A continual-learning method
    with a part for agents (`Method.agent_part`) handles both: it is applied to an agent of
    either kind (the pair it runs as says its agent's)."""
    if not hasattr(method, "action_spaces") and getattr(method, "applies_to_agents", lambda: False)():
        return ("discrete", "continuous")
    return tuple(getattr(method, "action_spaces", ("discrete",)))


@dataclass
class ContinualRLSetting(MemoryBudgetOptions, ProgressBarOption, Setting):
    """A gymnasium environment whose dynamics drift smoothly through the tasks' attribute values,
    trained on as one stream with no task boundaries and no task labels; evaluated at the end by
    the mean return of greedy episodes on each task."""

    name: ClassVar[str] = "continual_rl"

    # gymnasium environment id: a box of numbers as observation; discrete actions (CartPole-v1,
    # Acrobot-v1, MountainCar-v0) or continuous ones (Pendulum-v1, MountainCarContinuous-v0)
    env: str = "CartPole-v1"
    nb_tasks: int = 3  # tasks: sets of attribute values the dynamics pass through
    steps_per_task: int = 10_000  # environment steps of training per task
    # attributes of the environment that differ between tasks (default: its physical ones, e.g.
    # gravity, masspole and length for CartPole-v1)
    varied_attributes: Optional[List[str]] = None
    # each task after the first scales each varied attribute by a factor drawn log-uniformly (with
    # the seed) between --min_scale and --max_scale; the first task is the environment as defined
    min_scale: float = 0.5
    max_scale: float = 2.0  # see --min_scale
    max_episode_steps: Optional[int] = None  # end episodes after this many steps (default: the environment's limit)
    eval_episodes: int = 10  # greedy episodes per task at each evaluation
    accelerator: str = "auto"  # where methods keep their networks: cpu, gpu or auto
    # numerical precision of the methods' networks: 32-true, bf16-mixed (CPU or GPU), or 16-mixed (GPU, float16
    # with loss scaling)
    precision: str = "32-true"

    facts: ClassVar[tuple[str, ...]] = (
        "attribute_names", "task_values", "task_id_in_observation", "observation_shape", "action_space_kind",
        "num_actions", "action_bounds", "uniform_actions", "num_outputs", "total_steps", "device", "stream_tasks",
    )

    def validate(self) -> None:
        super().validate()
        self.check_memory_budget()
        for name in ("nb_tasks", "steps_per_task", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ConfigurationError(f"--max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ConfigurationError(
                f"--min_scale and --max_scale must satisfy 0 < min_scale <= max_scale, got {self.min_scale} "
                f"and {self.max_scale}"
            )
        check_accelerator(self.accelerator)
        check_precision(self.precision, self.accelerator)
        if self.varied_attributes is not None and len(set(self.varied_attributes)) < len(self.varied_attributes):
            repeated = sorted({name for name in self.varied_attributes if self.varied_attributes.count(name) > 1})
            raise ConfigurationError(f"--varied_attributes names {', '.join(repeated)} more than once")
        if self.varied_attributes is None and self.env not in DEFAULT_VARIED_ATTRIBUTES:
            make_env(self.env).close()  # an unknown id is refused as such first
            raise ConfigurationError(
                f"--env {self.env}: sylvan knows no default attributes to vary for it; name some with "
                "--varied_attributes (numeric attributes of the environment, such as gravity)"
            )
        probe = make_env(self.env, self.max_episode_steps)
        try:
            if probe.spec is None or probe.spec.max_episode_steps is None:
                raise ConfigurationError(
                    f"--env {self.env} sets no limit on the length of an episode; give --max_episode_steps"
                )
            self._defaults = default_attributes(probe, self.attribute_names)
            self._observation_size = int(np.prod(probe.observation_space.shape))
            space = probe.action_space
            if isinstance(space, gym.spaces.Discrete):
                self._num_actions, self._action_bounds = int(space.n), None
            else:  # a bounded vector (make_env refuses anything else)
                self._num_actions = int(space.shape[0])
                self._action_bounds = (torch.as_tensor(space.low, dtype=torch.float32),
                                       torch.as_tensor(space.high, dtype=torch.float32))
        finally:
            probe.close()

    def check_method(self, method: Any) -> None:
        """Refuse a method that does not handle this environment's kind of actions."""
        handled = action_spaces_of(method)
        if self.action_space_kind not in handled:
            able = sorted(name for name, cls in METHODS.items()
                          if cls.is_applicable(self) and self.action_space_kind in action_spaces_of(cls))
            raise ConfigurationError(
                f"--env {self.env} has {self.action_space_kind} actions, and {method.name} handles "
                f"{' and '.join(handled)} ones; methods for {self.action_space_kind} actions: {', '.join(able)}"
            )

    # ----- the problem ----------------------------------------------------------------------

    @property
    def attribute_names(self) -> list[str]:
        return list(self.varied_attributes if self.varied_attributes is not None
                    else DEFAULT_VARIED_ATTRIBUTES[self.env])

    def sequence_values(self) -> list[dict[str, float]]:
        """The values of the varied attributes of each of the `--nb_tasks` tasks of the sequence
        (task 0: the environment's own)."""
        return task_attributes(self._defaults, self.nb_tasks, self.min_scale, self.max_scale, self.seed)

    def task_values(self) -> list[dict[str, float]]:
        """The values of each task of this setting's stream: here the whole sequence."""
        return self.sequence_values()

    @property
    def stream_tasks(self) -> int:
        """The tasks this setting trains and evaluates on: the columns of its return matrix."""
        return len(self.task_values())

    @property
    def task_id_in_observation(self) -> bool:
        return self.task_labels_at_train

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """Shape of what methods observe: the flattened observation, plus the one-hot task id
        where task labels are given."""
        return (self._observation_size + (self.nb_tasks if self.task_id_in_observation else 0),)

    @property
    def action_space_kind(self) -> str:
        """"discrete" (a choice among `num_actions` actions) or "continuous" (a vector of
        `num_actions` numbers within `action_bounds`)."""
        return "discrete" if self._action_bounds is None else "continuous"

    @property
    def num_actions(self) -> int:
        """Discrete actions: how many there are; continuous ones: the length of the vector."""
        return self._num_actions

    @property
    def action_bounds(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Continuous actions: the lowest and highest value of each component; None if discrete."""
        return self._action_bounds

    def uniform_actions(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """`count` continuous actions drawn uniformly within the bounds, as a (count, size) CPU
        tensor: random exploration, and the `random` method."""
        low, high = self._action_bounds
        return low + torch.rand(count, len(low), generator=generator) * (high - low)

    @property
    def num_outputs(self) -> int:
        """Numbers `predict` returns per observation: a score per action, or the action's components."""
        return self._num_actions

    @property
    def total_steps(self) -> int:
        """Environment steps of training in the whole stream."""
        return self.stream_tasks * self.steps_per_task

    @property
    def device(self) -> torch.device:
        """Where methods should keep their networks."""
        return accelerator_device(self.accelerator)

    def task_env(self, task_id: int) -> gym.Env:
        """The environment of task `task_id` (its attribute values, fixed), as methods see it."""
        env = make_env(self.env, self.max_episode_steps)
        set_attributes(env, self.task_values()[task_id])
        if self.task_id_in_observation:
            env = TaskIdObservation(env, task_id, self.nb_tasks)
        return env

    # ----- training -------------------------------------------------------------------------

    def nb_stages(self) -> int:
        return 1

    def planned_stages(self) -> int:
        return self.nb_stages()

    def training_env(self, stage: int, on_episode_end: EpisodeLog | None = None) -> StepBudget:
        """The environment trained on in `stage`: here the whole stream, its dynamics drifting
        through every task's values."""
        env = AttributeDrift(make_env(self.env, self.max_episode_steps), self.task_values(), self.steps_per_task)
        return self.budgeted(env, self.total_steps, stage, on_episode_end)

    def budgeted(self, env: gym.Env, steps: int, stage: int, on_episode_end: EpisodeLog | None = None) -> StepBudget:
        """`env` with `steps` steps to train for in `stage`, seeded for it; `on_episode_end(steps,
        episode_return, episode_length)` is told of each episode, at the stage's step count."""
        return StepBudget(env, steps, derived_seed(self.seed, TRAINING, stage), on_episode_end=on_episode_end)

    def evaluation_seed(self, task_id: int, episode: int) -> int:
        """The seed of evaluation episode `episode` on task `task_id`: the same at every evaluation."""
        return derived_seed(self.seed, EVALUATION, task_id, episode)

    def stages(self) -> Any:
        """The environments' stages and greedy-episode evaluation (`sylvan.run.reinforcement`)."""
        from sylvan.run.reinforcement import EnvironmentStages

        return EnvironmentStages(self)


