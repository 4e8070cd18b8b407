"""MuJoCo's physics as tasks and Meta-World's tasks and sequences (the rl extra): the attributes a
task changes, the sequences, the success recorded beside the return, and the refusals."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from sylvan.cli import run as cli_run
from sylvan.errors import ConfigurationError
from sylvan.methods import METHODS
from sylvan.settings import ContinualRLSetting, IncrementalRLSetting, TaskIncrementalRLSetting
from sylvan.settings.environments import default_attributes, make_env, set_attributes
from sylvan.settings.simulators import CW10, make_metaworld, sequence_envs
from tests.conftest import tiny_method

mujoco = pytest.importorskip("mujoco", reason="the rl extra (MuJoCo) is not installed")
metaworld = pytest.importorskip("metaworld", reason="the rl extra (Meta-World) is not installed")

TINY = dict(nb_tasks=2, steps_per_task=60, eval_episodes=1, max_episode_steps=20, accelerator="cpu", seed=0)


def test_a_mujoco_task_scales_gravity_masses_and_a_bodys_size():
    env = make_env("HalfCheetah-v5")
    model = env.unwrapped.model
    masses, sizes = model.body_mass.copy(), model.geom_size.copy()
    names = ["gravity", "mass", "size:torso"]
    assert default_attributes(env, names) == {"gravity": -9.81, "mass": 1.0, "size:torso": 1.0}
    set_attributes(env, {"gravity": -4.0, "mass": 2.0, "size:torso": 1.5})
    torso = [i for i in range(model.ngeom) if model.body(model.geom_bodyid[i]).name == "torso"]
    assert model.opt.gravity[2] == -4.0 and np.allclose(model.body_mass, 2 * masses)
    assert np.allclose(model.geom_size[torso], 1.5 * sizes[torso])
    others = [i for i in range(model.ngeom) if i not in torso]
    assert np.allclose(model.geom_size[others], sizes[others])
    set_attributes(env, {"gravity": -9.81, "mass": 1.0, "size:torso": 1.0})  # from what it was made with
    assert np.allclose(model.body_mass, masses) and np.allclose(model.geom_size, sizes)
    with pytest.raises(ConfigurationError, match="'mass:tail' is not an attribute of HalfCheetah-v5; .* bthigh"):
        default_attributes(env, ["mass:tail"])
    env.close()


def test_mujoco_tasks_have_dynamics_of_their_own():
    setting = IncrementalRLSetting(**{**TINY, "env": "Hopper-v5"})
    values = setting.task_values()
    assert values[0] == {"gravity": -9.81, "mass": 1.0} and values[1] != values[0]
    trajectories = []
    for task in range(2):
        env = setting.task_env(task)
        env.reset(seed=3)
        trajectories.append(np.stack([env.step(np.full(3, 0.5))[0] for _ in range(10)]))
        env.close()
    assert not np.allclose(trajectories[0], trajectories[1])


def test_continual_worlds_sequences_are_its_ten_tasks_once_and_twice():
    assert sequence_envs(["CW10"]) == [f"Meta-World/{task}" for task in CW10]
    assert sequence_envs(["CW20"]) == sequence_envs(["CW10"]) * 2
    assert sequence_envs(["hammer-v3", "Meta-World/push-v3"]) == ["Meta-World/hammer-v3", "Meta-World/push-v3"]
    assert CW10[0] == "hammer-v3" and CW10[-1] == "peg-unplug-side-v3" and len(set(CW10)) == 10
    assert ContinualRLSetting(**{**TINY, "nb_tasks": 3, "task_envs": ["CW20"]}).nb_tasks == 20


def test_meta_world_runs_record_the_success_matrix_and_each_episodes_success(tmp_path):
    argv = ["--setting", "task_incremental_rl", "--method", "sac", "--task_envs", "hammer-v3", "push-wall-v3",
            "--steps_per_task", "60", "--max_episode_steps", "20", "--eval_episodes", "2", "--learning_starts",
            "20", "--hidden_size", "16", "--replay_size", "16", "--results_dir", str(tmp_path), "--run_name", "cw"]
    assert cli_run(argv) == 0
    results = json.loads((tmp_path / "cw" / "results.json").read_text())
    assert np.array(results["success_matrix"]).shape == (2, 2) and len(results["return_matrix"]) == 2
    assert all(s in (0.0, 0.5, 1.0) for row in results["success_matrix"] for s in row)
    assert results["final_average_success"] == pytest.approx(np.mean(results["success_matrix"][-1]))
    header = (tmp_path / "cw" / "logs" / "train.csv").read_text().splitlines()[0]
    assert "episode_success" in header.split(",")


def test_a_meta_world_episode_reset_with_a_seed_is_the_same_whatever_came_before():
    """Its variation (the goal's position) too: the evaluation episodes are the same at every
    evaluation, and a resumed run's are those of the run that never stopped."""
    fresh = make_metaworld("Meta-World/window-close-v3", 200, 3).reset(seed=5)[0]
    used = make_metaworld("Meta-World/window-close-v3", 200, 3)
    for _ in range(3):
        used.reset()
    assert np.array_equal(used.reset(seed=5)[0], fresh)
    assert not np.array_equal(used.reset(seed=6)[0], fresh)


def test_meta_world_runs_repeat_with_their_seed():
    def run():
        setting = TaskIncrementalRLSetting(**{**TINY, "task_envs": ["push-v3", "reach-v3"]})
        return setting.apply(tiny_method(METHODS["sac"])).accuracy_matrix

    assert run() == run()


def test_continual_rl_switches_environments_between_episodes_without_a_boundary():
    setting = ContinualRLSetting(**{**TINY, "task_envs": ["reach-v3", "push-v3"]})
    env = setting.training_env(0)
    env.reset()
    tasks = []
    while not env.exhausted:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        tasks.append(type(env.unwrapped).__name__)
        if (terminated or truncated) and not env.exhausted:
            env.reset()
    assert set(tasks[:60]) == {"SawyerReachEnvV3"} and set(tasks[60:]) == {"SawyerPushEnvV3"}
    env.close()


@pytest.mark.parametrize(("options", "message"), [
    ({"task_envs": ["hammer-v3"], "nb_tasks": 3, "env": "Pendulum-v1"},
     "--task_envs gives each task its environment: --env"),
    ({"task_envs": ["hammer-v3", "push-v3"], "nb_tasks": 5}, "--task_envs names 2 tasks, and --nb_tasks is 5"),
    ({"task_envs": ["hammering-v3"], "nb_tasks": 3}, "Meta-World has no task 'hammering-v3'; its tasks: assembly-v3"),
    ({"task_envs": ["hammer-v3", "Pendulum-v1"]}, "observes 3 numbers and acts with 1, Meta-World/hammer-v3 39"),
])
def test_task_environments_that_cannot_make_a_stream_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        IncrementalRLSetting(**{**TINY, **options})


def test_a_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "metaworld", None)
    with pytest.raises(ConfigurationError, match=r'needs Meta-World, which is not installed: install the rl extra'):
        make_metaworld("Meta-World/reach-v3", None, 0)
