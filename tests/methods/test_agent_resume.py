"""A continual-learning method on an agent survives a kill -9: `packnet` with `sac` on a MuJoCo
drift and `ewc` with `ppo`, resumed from their last checkpoint, end as the runs never stopped
(the agent, its optimizers, its memory, its part's state and the random generators restored)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.cli.test_cli import REPO, sylvan

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
              "--eval_episodes", "2", "--accelerator", "cpu", "--seed", "2", "--results_dir", str(tmp_path)]
    whole = sylvan(*common, "--run_name", "whole")
    assert whole.returncode == 0, whole.stderr
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), *common, "--run_name", "killed"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "killed" / "checkpoints" / "after_stage_0.pt"
    written = tmp_path / "killed" / "results.json"  # after the checkpoint of the task it reports
    deadline = time.monotonic() + 120
    while not (first.exists() and written.exists()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not json.loads(written.read_text())["complete"], "killed after its first task, before its last"
    resumed = sylvan("--resume", str(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr
    expected = json.loads((tmp_path / "whole" / "results.json").read_text())
    got = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert got["complete"] and got["return_matrix"] == expected["return_matrix"]
