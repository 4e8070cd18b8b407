"""Gymnasium environments for the reinforcement-learning branch: tasks are values of the
environment's physical attributes (a CartPole's pole length, gravity, ...), which the settings
set on the environment, fixed per task or drifting smoothly from one task's values to the next.

The wrappers the settings hand to methods (the step budget, the task id in the observation) are
`sylvan.settings.env_wrappers`'; MuJoCo's attributes and Meta-World's tasks, `sylvan.settings.simulators`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from sylvan.errors import ConfigurationError
from sylvan.settings.simulators import EXTRA, METAWORLD, is_mujoco, make_metaworld, mujoco_defaults, set_mujoco

# Environments whose physical attributes are known to change their dynamics, with the
# attributes varied by default; any other environment works when --varied_attributes names
# numeric attributes of it.
DEFAULT_VARIED_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "CartPole-v1": ("gravity", "masspole", "length"),
    "CartPole-v0": ("gravity", "masspole", "length"),
    "Acrobot-v1": ("LINK_LENGTH_1", "LINK_MASS_1", "LINK_MASS_2"),
    "MountainCar-v0": ("force", "gravity"),
    "Pendulum-v1": ("g", "m", "l"),
    "MountainCarContinuous-v0": ("power",),
    **{f"{name}-v5": ("gravity", "mass") for name in ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Swimmer")},
}


def _refresh_cartpole(env: Any) -> None:
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


class DerivedAttributes(NamedTuple):
    """Attributes an environment class computes from others in its constructor: `refresh`
    recomputes them after a change; `sources` says what each is computed from. They cannot be
    varied themselves (the refresh would undo it)."""

    refresh: Callable[[Any], None]
    sources: dict[str, str]


DERIVED_ATTRIBUTES: dict[str, DerivedAttributes] = {
    "CartPoleEnv": DerivedAttributes(
        _refresh_cartpole, {"total_mass": "masspole and masscart", "polemass_length": "masspole and length"}
    ),
}


def make_env(env_id: str, max_episode_steps: int | None = None, seed: int | None = None) -> gym.Env:
    """`gymnasium.make(env_id)` (Meta-World's tasks, "Meta-World/<task>", made with `seed`),
    refusing with a clear message what the RL settings cannot run: an unknown id, a missing
    optional dependency, observations that are not one flat box of numbers, or actions that
    are neither discrete nor a bounded vector of numbers."""
    try:
        if env_id.startswith(METAWORLD):
            env = make_metaworld(env_id, max_episode_steps, seed)
        else:
            env = gym.make(env_id, max_episode_steps=max_episode_steps)
    except gym.error.DependencyNotInstalled as error:
        raise ConfigurationError(f"--env {env_id} needs a package that is not installed ({error}): install "
                                 f"{EXTRA}") from error
    except gym.error.Error as error:
        raise ConfigurationError(
            f"--env {env_id!r} is not a gymnasium environment ({error}); for example "
            f"{', '.join(DEFAULT_VARIED_ATTRIBUTES)}"
        ) from error
    space = env.action_space
    continuous = isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and bool(
        np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)))
    if not (isinstance(space, gym.spaces.Discrete) or continuous):
        env.close()
        raise ConfigurationError(
            f"--env {env_id}: its actions are {space}; the RL settings need discrete actions, or continuous "
            "ones as a bounded vector of numbers"
        )
    if not isinstance(env.observation_space, gym.spaces.Box):
        env.close()
        raise ConfigurationError(
            f"--env {env_id}: its observations are {env.observation_space}; the RL settings need a box of numbers"
        )
    return env


def default_attributes(env: gym.Env, names: Sequence[str]) -> dict[str, float]:
    """The values of `names` on the (unwrapped) environment as it was made, refusing names that
    are not numeric attributes of it."""
    inner = env.unwrapped
    env_name = env.spec.id if env.spec else type(inner).__name__
    if is_mujoco(inner):
        return mujoco_defaults(inner, list(names), env_name)
    known = DERIVED_ATTRIBUTES.get(type(inner).__name__)
    derived = known.sources if known is not None else {}
    values = {}
    for name in names:
        if name in derived:
            raise ConfigurationError(
                f"--varied_attributes: {env_name} computes {name!r} from {derived[name]}; vary those instead"
            )
        if not _variable(inner, name):
            variable = sorted(
                key for key in {*vars(inner), *dir(type(inner))}
                if not key.startswith("_") and key not in derived and _variable(inner, key)
            )
            raise ConfigurationError(
                f"--varied_attributes: {name!r} is not a numeric attribute of {env_name} that can be set; "
                f"its numeric attributes: {', '.join(variable)}"
            )
        values[name] = float(getattr(inner, name))
    return values


def _variable(inner: Any, name: str) -> bool:
    """Whether `name` is a number held by the environment (in the instance or its class) that
    an assignment changes: not a boolean, not a property computed or guarded by the class."""
    value = getattr(inner, name, None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    declared = inspect.getattr_static(type(inner), name, None)
    return not hasattr(declared, "__get__")  # a descriptor (property) decides what assignment does


def task_attributes(
    defaults: dict[str, float], nb_tasks: int, min_scale: float, max_scale: float, seed: int
) -> list[dict[str, float]]:
    """The attribute values of each task: task 0 is the environment as gymnasium defines it;
    each later task multiplies each attribute by a factor drawn log-uniformly in
    [min_scale, max_scale] with the seed."""
    rng = np.random.default_rng([seed, 271828])
    tasks = [dict(defaults)]
    for _ in range(1, nb_tasks):
        scales = np.exp(rng.uniform(math.log(min_scale), math.log(max_scale), size=len(defaults)))
        tasks.append({name: value * float(scale) for (name, value), scale in zip(defaults.items(), scales)})
    return tasks


def set_attributes(env: gym.Env, values: dict[str, float]) -> None:
    """Give the environment's dynamics these attribute values (and what it derives from them)."""
    inner = env.unwrapped
    if is_mujoco(inner):
        set_mujoco(inner, values)
        return
    for name, value in values.items():
        setattr(inner, name, value)
    derived = DERIVED_ATTRIBUTES.get(type(inner).__name__)
    if derived is not None:
        derived.refresh(inner)


def interpolated(tasks: Sequence[dict[str, float]], position: float) -> dict[str, float]:
    """The attribute values `position` tasks into the stream: task k's values at position k,
    moving linearly to task k + 1's; the last task's values from position nb_tasks - 1 on."""
    last = len(tasks) - 1
    if position >= last:
        return dict(tasks[last])
    k = int(position)
    fraction = position - k
    return {name: (1 - fraction) * tasks[k][name] + fraction * tasks[k + 1][name] for name in tasks[k]}


class AttributeDrift(gym.Wrapper):
    """Changes the environment's attributes at every step, smoothly along the tasks' values:
    step s of the stream (0-based) runs with `interpolated(tasks, s / steps_per_task)`."""

    def __init__(self, env: gym.Env, tasks: Sequence[dict[str, float]], steps_per_task: int) -> None:
        super().__init__(env)
        self.tasks = list(tasks)
        self.steps_per_task = steps_per_task
        self.steps = 0
        set_attributes(env, interpolated(self.tasks, 0.0))

    def current_values(self) -> dict[str, float]:
        return interpolated(self.tasks, self.steps / self.steps_per_task)

    def step(self, action: Any) -> Any:
        set_attributes(self.env, self.current_values())
        self.steps += 1
        return self.env.step(action)
