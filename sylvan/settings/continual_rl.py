"""Continual reinforcement learning: a gymnasium environment whose dynamics drift smoothly.

The root of the reinforcement-learning branch. A task is a set of values of the environment's
physical attributes (`environments.task_attributes`), or an environment of its own (`--task_envs`);
here the stream moves from each task to the next with no boundary the method is told of. The
method trains through `fit(env)` (a `StepBudget`: it steps until `env.exhausted`) and is evaluated
by greedy episodes on each task: `predict` scores each discrete action (the best is taken) or returns the
continuous action (clipped to the bounds); a method declares which kinds it handles (`action_spaces`).
The matrix holds mean episode returns (and successes, where reported)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, List, Optional

import gymnasium as gym
import torch

from sylvan.errors import ConfigurationError
from sylvan.registry import METHODS
from sylvan.run.budget import MemoryBudgetOptions
from sylvan.settings.base import ProgressBarOption, Setting, accelerator_device, check_accelerator, check_precision
from sylvan.settings.env_copies import EnvironmentCopies
from sylvan.settings.env_wrappers import StepBudget, TaskIdObservation
from sylvan.settings.environments import (
    DEFAULT_VARIED_ATTRIBUTES,
    AttributeDrift,
    default_attributes,
    make_env,
    set_attributes,
    task_attributes,
)
from sylvan.settings.rl_evaluation import EvaluationCurveOptions
from sylvan.settings.rl_tasks import action_spaces_of, checked_task_envs, derived_seed, probe_spaces
from sylvan.settings.simulators import METAWORLD, sequence_envs
from sylvan.settings.task_mixture import TaskSequence

TRAINING, EVALUATION, ENVIRONMENT = 1, 2, 4  # the purposes derived seeds are drawn for
EpisodeLog = Callable[[int, float, int, Optional[float]], None]


@dataclass
class ContinualRLSetting(EvaluationCurveOptions, EnvironmentCopies, MemoryBudgetOptions, ProgressBarOption, Setting):
    """A gymnasium environment whose dynamics drift smoothly through the tasks' attribute values,
    trained on as one stream with no task boundaries and no task labels; evaluated at the end by
    the mean return of greedy episodes on each task. `EpisodeLog`: on_episode_end(steps,
    episode_return, episode_length, success: None where the environment reports none)."""

    name: ClassVar[str] = "continual_rl"

    # gymnasium environment id: a box of numbers as observation; discrete actions (CartPole-v1, Acrobot-v1,
    # MountainCar-v0) or continuous ones (Pendulum-v1, MountainCarContinuous-v0; with the rl extra, MuJoCo's
    # HalfCheetah-v5, Hopper-v5, Walker2d-v5, and Meta-World's tasks, Meta-World/reach-v3)
    env: str = "CartPole-v1"
    # one environment per task, in order, in place of --env's attribute values (the rl extra): Meta-World's tasks
    # (hammer-v3), or Continual World's sequences CW10 and CW20; --nb_tasks is their number
    task_envs: Optional[List[str]] = None
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
        "sequence_envs", "reports_success",
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
            raise ConfigurationError(f"--min_scale and --max_scale must satisfy 0 < min_scale <= max_scale, "
                                     f"got {self.min_scale} and {self.max_scale}")
        check_accelerator(self.accelerator)
        check_precision(self.precision, self.accelerator)
        if self.varied_attributes is not None and len(set(self.varied_attributes)) < len(self.varied_attributes):
            repeated = sorted({name for name in self.varied_attributes if self.varied_attributes.count(name) > 1})
            raise ConfigurationError(f"--varied_attributes names {', '.join(repeated)} more than once")
        if self.task_envs is not None:  # in place of --env's tasks; --nb_tasks (at its default) is their number
            self.nb_tasks = checked_task_envs(self, type(self).__dataclass_fields__)
        elif self.varied_attributes is None and self.env not in DEFAULT_VARIED_ATTRIBUTES:
            make_env(self.env).close()  # an unknown id is refused as such first
            raise ConfigurationError(f"--env {self.env}: sylvan knows no default attributes to vary for it; name some "
                                     "with --varied_attributes (numeric attributes of the environment: gravity...)")
        self._observation_size, self._num_actions, self._action_bounds = probe_spaces(
            self.sequence_envs(), self.max_episode_steps)
        self._defaults = {}
        if self.task_envs is None:
            probe = make_env(self.env, self.max_episode_steps)
            try:
                self._defaults = default_attributes(probe, self.attribute_names)
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
        if self.task_envs is not None:
            return []
        return list(self.varied_attributes if self.varied_attributes is not None
                    else DEFAULT_VARIED_ATTRIBUTES[self.env])

    def sequence_envs(self) -> list[str]:
        """The environment of each of the `--nb_tasks` tasks of the sequence."""
        return sequence_envs(self.task_envs) if self.task_envs is not None else [self.env] * self.nb_tasks

    def sequence_values(self) -> list[dict[str, float]]:
        """The values of the varied attributes of each of the `--nb_tasks` tasks of the sequence
        (task 0: the environment's own; none where each task is an environment of its own)."""
        return task_attributes(self._defaults, self.nb_tasks, self.min_scale, self.max_scale, self.seed)

    def stream_task_ids(self) -> list[int]:
        """The tasks of the sequence this setting's stream trains and evaluates on: here all."""
        return list(range(self.nb_tasks))

    def task_values(self) -> list[dict[str, float]]:
        """The attribute values of each task of this setting's stream."""
        return [self.sequence_values()[task] for task in self.stream_task_ids()]

    @property
    def reports_success(self) -> bool:
        """Whether the environments report each step's success (Meta-World's)."""
        return all(env.startswith(METAWORLD) for env in self.sequence_envs())

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
        """The environment of task `task_id` of the stream (its attribute values, fixed), as methods see it."""
        task = self.stream_task_ids()[task_id]
        env = make_env(self.sequence_envs()[task], self.max_episode_steps, derived_seed(self.seed, ENVIRONMENT, task))
        set_attributes(env, self.sequence_values()[task])
        if self.task_id_in_observation:
            env = TaskIdObservation(env, task_id, self.nb_tasks)
        return env

    # ----- training -------------------------------------------------------------------------

    def nb_stages(self) -> int:
        return 1

    def planned_stages(self) -> int:
        return self.nb_stages()

    def training_env(self, stage: int, on_episode_end: EpisodeLog | None = None,
                     copy: tuple[int, int] = (0, 1)) -> StepBudget:
        """The environment trained on in `stage`: here the whole stream, its dynamics drifting
        through every task's values (`copy` = (k, n): copy k of n stepped together, each a nth of the steps)."""
        per_task = self.steps_per_task // copy[1]
        if self.task_envs is not None:  # environments of their own: one after the other
            env = TaskSequence([self.task_env(task) for task in range(self.stream_tasks)], per_task)
        else:
            env = AttributeDrift(make_env(self.env, self.max_episode_steps), self.task_values(), per_task)
        return self.budgeted(env, self.total_steps // copy[1], stage, on_episode_end, copy[0])

    def budgeted(self, env: gym.Env, steps: int, stage: int, on_episode_end: EpisodeLog | None = None,
                 copy: int = 0) -> StepBudget:
        """`env` with `steps` steps to train for in `stage`, seeded for it (and for its `copy`, past
        the first); `on_episode_end` is told of each episode, at the stage's step count."""
        seed = derived_seed(self.seed, TRAINING, stage, *([copy] if copy else []))
        return StepBudget(env, steps, seed, on_episode_end=on_episode_end)

    def evaluation_seed(self, task_id: int, episode: int) -> int:
        """The seed of evaluation episode `episode` on task `task_id`: the same at every evaluation."""
        return derived_seed(self.seed, EVALUATION, task_id, episode)

    def stages(self) -> Any:
        """The environments' stages and greedy-episode evaluation (`sylvan.run.reinforcement`)."""
        from sylvan.run.reinforcement import EnvironmentStages

        return EnvironmentStages(self)


