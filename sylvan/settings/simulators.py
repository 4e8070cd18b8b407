"""The physics simulators of the reinforcement-learning branch beyond classic control, both from
the `rl` extra of the package (`pip install "sylvan[rl]"`):

- MuJoCo through gymnasium (HalfCheetah-v5, Hopper-v5, Walker2d-v5, ...): a task scales the
  simulator's physics, as the task families of Sequoia and LPG-FTW (Mendez et al., NeurIPS 2020)
  do: "gravity" (its vertical component, m/s^2), "mass" and "size" (factors on every body's mass
  and every geometry's size), and "mass:BODY", "size:BODY" (factors on one body's);
- Meta-World (`metaworld`, v3 tasks): `Meta-World/<task>` is one task's environment (goal and
  object positions drawn among the task's 50 variations at each episode, as Meta-World's MT1
  draws them), and Continual World's sequences (Wołczyk et al., NeurIPS 2021) are lists of them:
  CW10, and CW20 (CW10 twice). Its environments report each step's success.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from sylvan.errors import ConfigurationError

EXTRA = 'the rl extra of sylvan: pip install "sylvan[rl]"'
METAWORLD = "Meta-World/"
CW10 = ("hammer-v3", "push-wall-v3", "faucet-close-v3", "push-back-v3", "stick-pull-v3", "handle-press-side-v3",
        "push-v3", "shelf-place-v3", "window-close-v3", "peg-unplug-side-v3")
SEQUENCES: dict[str, tuple[str, ...]] = {"CW10": CW10, "CW20": CW10 + CW10}
MUJOCO_ATTRIBUTES = ("gravity", "mass", "size")  # and "mass:BODY", "size:BODY"


def sequence_envs(names: list[str]) -> list[str]:
    """The environment ids of a list of tasks: a sequence's name (CW10, CW20) stands for its tasks,
    each Meta-World's; a bare Meta-World task name (hammer-v3) is given its prefix."""
    envs: list[str] = []
    for name in names:
        if name in SEQUENCES:
            envs += [METAWORLD + task for task in SEQUENCES[name]]
        else:
            envs.append(name if "/" in name or not name.endswith("-v3") else METAWORLD + name)
    return envs


def make_metaworld(env_id: str, max_episode_steps: int | None, seed: int | None) -> gym.Env:
    """Meta-World's task `env_id` ("Meta-World/hammer-v3") as one gymnasium environment."""
    try:
        import metaworld  # noqa: F401  (registers the Meta-World environments with gymnasium)
    except ImportError as error:
        raise ConfigurationError(f"--env {env_id} needs Meta-World, which is not installed: install {EXTRA}") from error
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    task = env_id[len(METAWORLD):]
    if task not in ALL_V3_ENVIRONMENTS:
        raise ConfigurationError(f"--env {env_id}: Meta-World has no task {task!r}; its tasks: "
                                 f"{', '.join(sorted(ALL_V3_ENVIRONMENTS))}")
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    return SeededVariation(gym.make("Meta-World/MT1", env_name=task, seed=0 if seed is None else seed,
                                    disable_env_checker=True, **kwargs))


class SeededVariation(gym.Wrapper):
    """A Meta-World environment whose `reset(seed=s)` also draws the episode's variation (goal and
    object positions) from `s`. Meta-World's MT1 draws it from the environment's generator before
    that generator is seeded, so an episode reset with a seed would depend on every episode before
    it: the evaluation episodes of a run, meant to be the same at every evaluation, would not be,
    nor would a resumed run's."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if seed is not None:
            self.env.unwrapped.np_random, _ = gym.utils.seeding.np_random(seed)
        return self.env.reset(seed=seed, options=options)


def is_mujoco(inner: Any) -> bool:
    """Whether the (unwrapped) environment simulates with MuJoCo."""
    return type(getattr(inner, "model", None)).__name__ == "MjModel"


def _bodies(inner: Any) -> list[str]:
    return [inner.model.body(i).name for i in range(inner.model.nbody)]


def mujoco_defaults(inner: Any, names: list[str], env_name: str) -> dict[str, float]:
    """The values of the attributes `names` of a MuJoCo environment as it was made: gravity in
    m/s^2, the factors 1."""
    bodies = _bodies(inner)
    values = {}
    for name in names:
        kind, _, body = name.partition(":")
        if kind not in MUJOCO_ATTRIBUTES or (body and (kind == "gravity" or body not in bodies)):
            raise ConfigurationError(
                f"--varied_attributes: {name!r} is not an attribute of {env_name}; a MuJoCo environment's are "
                f"gravity, mass, size, and mass:BODY or size:BODY for its bodies {', '.join(bodies[1:])}")
        values[name] = float(inner.model.opt.gravity[2]) if kind == "gravity" else 1.0
    return values


def set_mujoco(inner: Any, values: dict[str, float]) -> None:
    """Give a MuJoCo environment's physics these attribute values (factors on the masses and sizes
    it was made with)."""
    model = inner.model
    base = inner.__dict__.setdefault("_sylvan_made_with", {
        "body_mass": model.body_mass.copy(), "geom_size": model.geom_size.copy()})
    masses, sizes = np.ones(model.nbody), np.ones(model.nbody)
    bodies = _bodies(inner)
    for name, value in values.items():
        kind, _, body = name.partition(":")
        if kind == "gravity":
            model.opt.gravity[2] = value
        elif kind in ("mass", "size"):
            factors = masses if kind == "mass" else sizes
            factors[bodies.index(body) if body else slice(None)] *= value
    model.body_mass[:] = base["body_mass"] * masses
    model.geom_size[:] = base["geom_size"] * sizes[model.geom_bodyid][:, None]
