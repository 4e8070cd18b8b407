"""What the tasks of a reinforcement-learning setting are made of: their seeds, the kinds of
actions a method handles, `--task_envs` checked, and the spaces every task's environment must
share."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from sylvan.errors import ConfigurationError
from sylvan.settings.environments import make_env
from sylvan.settings.simulators import sequence_envs


def derived_seed(*parts: int) -> int:
    """A 32-bit seed for one purpose of a run (training or evaluation, task, episode)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def action_spaces_of(method: Any) -> tuple[str, ...]:
    """The kinds of actions an RL method (or method class) handles, from its `action_spaces`:
    "discrete", "continuous" or both. A method that does not say scores discrete actions, as
    every RL method did before continuous actions were supported. A continual-learning method
    with a part for agents (`Method.agent_part`) handles both: it is applied to an agent of
    either kind (the pair it runs as says its agent's)."""
    if not hasattr(method, "action_spaces") and getattr(method, "applies_to_agents", lambda: False)():
        return ("discrete", "continuous")
    return tuple(getattr(method, "action_spaces", ("discrete",)))


def checked_task_envs(setting: Any, fields: dict[str, Any]) -> int:
    """The number of tasks `--task_envs` names, refusing beside it --env and --varied_attributes
    (given other values than their defaults, `fields`') and another --nb_tasks than its default."""
    for name in ("env", "varied_attributes"):
        if getattr(setting, name) != fields[name].default:
            raise ConfigurationError(f"--task_envs gives each task its environment: --{name} has no use beside it")
    envs = sequence_envs(setting.task_envs)
    if not envs or setting.nb_tasks not in (fields["nb_tasks"].default, len(envs)):
        raise ConfigurationError(f"--task_envs names {len(envs)} tasks, and --nb_tasks is {setting.nb_tasks}")
    return len(envs)


class Spaces(NamedTuple):
    """What methods are built from: the flattened observation's size, the number of discrete
    actions (or the length of the continuous action vector) and, for continuous ones, the bounds."""

    observation_size: int
    num_actions: int
    action_bounds: tuple[torch.Tensor, torch.Tensor] | None


def spaces_of(env: gym.Env) -> Spaces:
    space = env.action_space
    size = int(np.prod(env.observation_space.shape))
    if isinstance(space, gym.spaces.Discrete):
        return Spaces(size, int(space.n), None)
    bounds = (torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(space.high, dtype=torch.float32))
    return Spaces(size, int(space.shape[0]), bounds)


def probe_spaces(env_ids: Sequence[str], max_episode_steps: int | None) -> Spaces:
    """The spaces of the environments `env_ids` (each made once), refusing one without a limit on
    its episodes' length and environments whose spaces differ (one network serves every task)."""
    found: Spaces | None = None
    for env_id in dict.fromkeys(env_ids):
        with closing(make_env(env_id, max_episode_steps)) as probe:
            if probe.spec is None or probe.spec.max_episode_steps is None:
                raise ConfigurationError(f"--env {env_id} sets no limit on the length of an episode; give "
                                         "--max_episode_steps")
            spaces = spaces_of(probe)
        if found is not None and (spaces.observation_size, spaces.num_actions) != found[:2]:
            raise ConfigurationError(
                f"--task_envs: {env_id} observes {spaces.observation_size} numbers and acts with {spaces.num_actions}, "
                f"{env_ids[0]} {found.observation_size} and {found.num_actions}; every task's must be alike")
        found = found or spaces
    return found

