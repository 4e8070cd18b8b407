"""The continual-RL benchmark script runs end to end and prints its table (tiny sizes)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def run_benchmark(*args: str) -> str:
    """The script's output, run with `args` (which must make it succeed)."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "continual_rl.py"), *args],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_prints_a_row_per_setting_and_method():
    output = run_benchmark("--settings", "incremental_rl", "continual_rl", "--seeds", "0", "1", "--nb_tasks", "2",
                           "--steps_per_task", "200", "--eval_episodes", "2", "--max_episode_steps", "40",
                           "--buffer_size", "100", "--learning_starts", "50")
    rows = [line for line in output.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| setting | method | final average return")
    assert len(rows) == 1 + 2 * 3
    assert "| continual_rl | dqn (reservoir) | " in output


def test_continuous_actions_get_sac_by_default():
    output = run_benchmark("--env", "Pendulum-v1", "--settings", "incremental_rl", "--seeds", "0", "--nb_tasks", "2",
                           "--steps_per_task", "100", "--eval_episodes", "1", "--max_episode_steps", "30",
                           "--buffer_size", "60", "--learning_starts", "40")
    assert "| incremental_rl | sac (fifo) | " in output and "| incremental_rl | sac (reservoir) | " in output
    assert "dqn" not in output
