"""Copies of a stage's training environment stepped together, for a method that acts in several
at once (`ppo --n_envs`): gymnasium's vector API over the setting's own environment, each copy a
share of the stage's steps with a seed of its own."""

from __future__ import annotations

from typing import Any

from sylvan.errors import ConfigurationError
from sylvan.settings.env_wrappers import VectorBudget


class EnvironmentCopies:
    """What a reinforcement-learning setting offers a method that steps several copies at once."""

    def training_copies(self, stage: int, on_episode_end: Any, copies: int) -> VectorBudget:
        """`training_copies(self, ...)`: `copies` copies of the stage's training environment."""
        return training_copies(self, stage, on_episode_end, copies)


def training_copies(setting: Any, stage: int, on_episode_end: Any, copies: int) -> VectorBudget:
    """`copies` copies of `setting`'s training environment of `stage` (`training_env(copy=(k,
    copies))`: copy 0 seeded as the one environment is, the stream's tasks or drift at a share of
    the steps in each), stepped together. An episode's end is logged at the stage's step where it
    falls (copy k's step s: step (s - 1) x copies + k + 1 of the stage). Refused where the copies
    cannot share the steps evenly, or an evaluation would fall inside a step of all copies."""
    check_copies(setting, copies)
    envs = []
    for k in range(copies):
        log = None if on_episode_end is None else _at_stage_step(on_episode_end, k, copies)
        envs.append(setting.training_env(stage, log, copy=(k, copies)))
    return VectorBudget(envs)


def _at_stage_step(on_episode_end: Any, copy: int, copies: int) -> Any:
    def log(steps: int, *episode: Any) -> None:
        on_episode_end((steps - 1) * copies + copy + 1, *episode)

    return log


def check_copies(setting: Any, copies: int) -> None:
    """Refuse `copies` that cannot share `setting`'s steps per task, or whose steps together would
    step over an evaluation point (`--eval_every`)."""
    for option in ("steps_per_task", "eval_every"):
        value = getattr(setting, option, None)
        if value is not None and value % copies:
            raise ConfigurationError(f"--n_envs {copies} steps that many environments at once: --{option} ({value}) "
                                     f"must be a multiple of it")
