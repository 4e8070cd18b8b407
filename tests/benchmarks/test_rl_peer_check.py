"""The RL peer check: its plain loops train and evaluate, sylvan's command in it runs with the
shared hyperparameters, and its report decides its checks from the runs' figures."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("rl_peer_check", REPO / "benchmarks" / "rl_peer_check.py")
rl_peer_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rl_peer_check)


@pytest.mark.parametrize(("algorithm", "env", "steps"), [("sac", "Pendulum-v1", 300), ("ppo", "CartPole-v1", 300),
                                                         ("dqn", "CartPole-v1", 1200)])
def test_a_plain_loop_trains_and_reports_its_final_return(algorithm, env, steps):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "plain_rl_loops.py"), algorithm, "--env", env,
                           "--steps", str(steps), "--eval_episodes", "1"], capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["return"] < 0 if env == "Pendulum-v1" else 1 <= found["return"] <= 500


def test_sylvans_run_in_the_peer_check_takes_the_shared_hyperparameters(tmp_path):
    run = rl_peer_check.run_one("sylvan", "ppo", "CartPole-v1", 300, 0, 1, None)
    assert "error" not in run and 1 <= run["return"] <= 500 and run["wall"] > 0
    argv = rl_peer_check.command("sylvan", "dqn", "CartPole-v1", 50_000, 1, 10, tmp_path)
    assert argv[argv.index("--lr") + 1] == "1e-3" and argv[argv.index("--steps_per_task") + 1] == "50000"


def test_the_report_decides_the_checks_from_the_figures():
    runs = [{"implementation": impl, "algorithm": "ppo", "seed": seed, "return": value, "wall": wall}
            for impl, values, wall in (("sylvan", (100, 120, 110), 10.5), ("sb3", (90, 130, 100), 12.0),
                                       ("plain", (95, 105, 115), 10.0)) for seed, value in enumerate(values)]
    text = "\n".join(rl_peer_check.report("ppo", "Hopper-v5", 1000, runs))
    assert "within the spread of stable-baselines3's seeds: yes" in text
    assert "sylvan's time / stable-baselines3's: 0.88" in text and "sylvan's time / the plain loop's: 1.05" in text
    runs[0]["return"] = runs[1]["return"] = runs[2]["return"] = 500
    assert "seeds: no" in "\n".join(rl_peer_check.report("ppo", "Hopper-v5", 1000, runs))
