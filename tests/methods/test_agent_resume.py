"""A continual-learning method on an agent survives a kill -9: `packnet` with `sac` on a MuJoCo
drift and `ewc` with `ppo`, resumed from their last checkpoint, end as the runs never stopped
(the agent, its optimizers, its memory, its part's state and the random generators restored)."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import whole_and_resumed_after_kill

RUNS = {
    "packnet-sac": ["--setting", "task_incremental_rl", "--method", "packnet", "--agent", "sac", "--env",
                    "HalfCheetah-v5", "--learning_starts", "50", "--hidden_size", "32", "--replay_size", "32",
                    "--retrain_steps", "20"],
    "ewc-ppo": ["--setting", "incremental_rl", "--method", "ewc", "--agent", "ppo", "--env", "Pendulum-v1",
                "--n_steps", "64", "--batch_size", "32", "--n_epochs", "2", "--ewc_lambda", "100"],
}


@pytest.mark.slow
@pytest.mark.parametrize("run", sorted(RUNS))
def test_a_method_on_an_agent_killed_mid_stream_resumes_to_the_uninterrupted_result(tmp_path, run):
    if run == "packnet-sac":
        pytest.importorskip("mujoco", reason="the rl extra (MuJoCo) is not installed")
    common = [*RUNS[run], "--nb_tasks", "3", "--steps_per_task", "300", "--max_episode_steps", "50",
              "--eval_episodes", "2", "--accelerator", "cpu", "--seed", "2"]
    expected, got = whole_and_resumed_after_kill(*common, results_dir=tmp_path)
    assert got["complete"] and got["return_matrix"] == expected["return_matrix"]
