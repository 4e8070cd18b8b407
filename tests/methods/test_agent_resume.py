"""A continual-learning method on an agent survives a kill -9: `packnet` with `sac` on a MuJoCo
drift, `ewc` with `ppo`, and a Continual World run (`ewc` on multi-head `sac`, resetting at each
task, a gradient step every second step as the reduced protocol's, its evaluation curve every 100
steps), resumed from their last checkpoint, end as the runs never stopped (the agent, its
optimizers, its memory, its part's state, the curve and the random generators restored)."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import whole_and_resumed_after_kill

RUNS = {
    "packnet-sac": ["--setting", "task_incremental_rl", "--method", "packnet", "--agent", "sac", "--env",
                    "HalfCheetah-v5", "--learning_starts", "50", "--hidden_size", "32", "--replay_size", "32",
                    "--retrain_steps", "20"],
    "ewc-ppo": ["--setting", "incremental_rl", "--method", "ewc", "--agent", "ppo", "--env", "Pendulum-v1",
                "--n_steps", "64", "--batch_size", "32", "--n_epochs", "2", "--ewc_lambda", "100"],
    "continual-world": ["--setting", "task_incremental_rl", "--method", "ewc", "--agent", "sac", "--task_envs",
                        "window-close-v3", "faucet-close-v3", "push-wall-v3", "--multihead", "true", "--reset_on_task",
                        "true", "--eval_every", "100", "--ewc_lambda", "1e4", "--learning_starts", "50",
                        "--hidden_size", "32", "--replay_size", "32", "--train_frequency", "2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("run", sorted(RUNS))
def test_a_method_on_an_agent_killed_mid_stream_resumes_to_the_uninterrupted_result(tmp_path, run):
    if run == "packnet-sac":
        pytest.importorskip("mujoco", reason="the rl extra (MuJoCo) is not installed")
    if run == "continual-world":
        pytest.importorskip("metaworld", reason="the rl extra (Meta-World) is not installed")
    common = [*RUNS[run], "--nb_tasks", "3", "--steps_per_task", "300", "--max_episode_steps", "50",
              "--eval_episodes", "2", "--accelerator", "cpu", "--seed", "2"]
    expected, got = whole_and_resumed_after_kill(*common, results_dir=tmp_path)
    assert got["complete"] and got["return_matrix"] == expected["return_matrix"]
    if run == "continual-world":
        assert got["success_matrix"] == expected["success_matrix"]
        assert got["evaluation_curve"] == expected["evaluation_curve"] and len(got["evaluation_curve"]["steps"]) == 9
