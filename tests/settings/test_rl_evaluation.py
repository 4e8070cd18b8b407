"""The evaluation curve of the RL settings (`--eval_every`) and the reference runs of
`--reference_dir` (`sylvan.run.references`): Continual World's metrics in a run's results."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

from sylvan.analysis.continual_world import forward_transfer_per_task, training_auc
from sylvan.cli import run as cli_run
from sylvan.errors import ConfigurationError
from sylvan.settings import IncrementalRLSetting
from sylvan.settings.env_wrappers import StepBudget

pytest.importorskip("metaworld", reason="the rl extra (Meta-World) is not installed")

TASKS = ["reach-v3", "window-close-v3"]


def options(tmp_path, setting: str, name: str, *extra: str) -> list[str]:
    return ["--setting", setting, "--method", "sac", "--task_envs", *TASKS, "--steps_per_task", "40",
            "--eval_every", "20", "--max_episode_steps", "10", "--eval_episodes", "2", "--learning_starts", "10",
            "--hidden_size", "16", "--replay_size", "8", "--seed", "3", "--results_dir", str(tmp_path),
            "--run_name", name, *extra]


def test_a_budget_calls_back_every_interval_but_at_its_end():
    env = StepBudget(gym.make("CartPole-v1"), budget=10, seed=0)
    called: list[int] = []
    env.every(4, called.append)
    env.reset()
    while not env.exhausted:
        _, _, terminated, truncated, _ = env.step(0)
        if (terminated or truncated) and not env.exhausted:
            env.reset()
    assert called == [4, 8]


def test_eval_every_must_divide_the_steps_of_a_task():
    with pytest.raises(ConfigurationError, match="--eval_every must divide --steps_per_task"):
        IncrementalRLSetting(steps_per_task=100, eval_every=30)


def test_the_curve_holds_an_evaluation_every_interval_and_at_each_tasks_end(tmp_path):
    assert cli_run(options(tmp_path, "incremental_rl", "curve")) == 0
    results = json.loads((tmp_path / "curve" / "results.json").read_text())
    curve = results["evaluation_curve"]
    assert curve["steps"] == [20, 40, 60, 80] and results["task_spans"] == [[0, 40], [40, 80]]
    assert [curve["return"][1], curve["return"][3]] == results["return_matrix"]  # each task's end is the matrix row
    assert [curve["success"][1], curve["success"][3]] == results["success_matrix"]
    assert results["cw_performance"] == pytest.approx(sum(curve["success"][-1]) / 2)
    assert results["cw_forward_transfer"] is None  # no reference given
    rows = (tmp_path / "curve" / "logs" / "train.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"eval_return_T0", "eval_success_T1"} <= set(header)
    logged = [row.split(",")[0] for row in rows[1:] if row.split(",")[header.index("eval_return_T0")]]
    assert logged == ["20", "60"]  # the points within a stage; the stages' ends are logged with the stage


def test_reference_runs_are_stored_once_per_task_and_read_for_forward_transfer(tmp_path):
    references = tmp_path / "references"
    for task in (0, 1):
        assert cli_run(options(tmp_path, "traditional_rl", f"alone{task}", "--task", str(task),
                               "--reference_dir", str(references))) == 0
    stored = sorted(path.name for path in references.iterdir())
    assert len(stored) == 2 and stored[0].startswith("Meta-World-reach-v3-task0-seed3-")
    # Continual World's protocol: heads per task and resets, which a task trained alone has no use for
    assert cli_run(options(tmp_path, "task_incremental_rl", "cl", "--reference_dir", str(references),
                           "--multihead", "true", "--reset_on_task", "true")) == 0
    results = json.loads((tmp_path / "cl" / "results.json").read_text())
    alone = [json.loads((tmp_path / f"alone{task}" / "results.json").read_text())["evaluation_curve"]
             for task in (0, 1)]
    expected_reference = [training_auc(curve["steps"], curve["success"], [[0, 40]])[0] for curve in alone]
    assert results["cw_reference_auc"] == pytest.approx(expected_reference)
    curve = results["evaluation_curve"]
    own = training_auc(curve["steps"], curve["success"], results["task_spans"])
    assert results["cw_forward_transfer_per_task"] == pytest.approx(forward_transfer_per_task(own, expected_reference))


def test_a_missing_reference_is_refused_with_what_makes_it(tmp_path):
    references = tmp_path / "references"
    alone = options(tmp_path, "traditional_rl", "alone0", "--task", "0", "--reference_dir", str(references))
    assert cli_run(alone) == 0
    missing = r"no reference run for 1 of the tasks \(Meta-World-window-close-v3-task1"
    with pytest.raises(ConfigurationError, match=missing):
        cli_run(options(tmp_path, "incremental_rl", "cl", "--reference_dir", str(references)))
    # another agent's options make another reference (but those that act across tasks)
    with pytest.raises(ConfigurationError, match="no reference run for 2 of the tasks"):
        cli_run(options(tmp_path, "incremental_rl", "cl2", "--reference_dir", str(references), "--tau", "0.01"))
