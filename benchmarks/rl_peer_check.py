"""Peer check of sylvan's agents: `sac` and `ppo` on a MuJoCo task and `dqn` on CartPole, each
against stable-baselines3's implementation at the same hyperparameters and steps and against a
plain single-file loop of the same algorithm (`benchmarks/plain_rl_loops.py`, the floor), over
several seeds, side by side in one run.

Each run is a process of its own on one core (`taskset`, one torch thread), timed whole (imports,
training, the final evaluation; sylvan's run also writes its results folder). The final return is
the mean of `--eval_episodes` deterministic episodes. Printed per algorithm: each
implementation's mean and spread of the final return over the seeds, its mean wall time; then
whether sylvan's return is within the spread of stable-baselines3's seeds (and Welch's t-test),
sylvan's time over stable-baselines3's (target: at most 1) and over the plain loop's (target: at
most 1.10). stable-baselines3 is a dependency of this benchmark only (`pip install
stable-baselines3`); without it, its rows are left out.

    python benchmarks/rl_peer_check.py                       # sac, ppo on Hopper-v5; dqn on CartPole-v1
    python benchmarks/rl_peer_check.py --quick               # a few thousand steps, one seed: the script works
    python benchmarks/rl_peer_check.py --algorithms ppo --steps 100000 --seeds 0 1 2 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Queue

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STEPS = {"sac": 30_000, "ppo": 100_000, "dqn": 50_000}
DEFAULT_ENVS = {"sac": "Hopper-v5", "ppo": "Hopper-v5", "dqn": "CartPole-v1"}


def sylvan_options(algorithm: str, steps: int) -> list[str]:
    """sylvan's options for the shared hyperparameters (stable-baselines3's defaults for sac and
    ppo; for dqn, a set both take: one gradient step every 4 environment steps)."""
    return {
        "sac": ["--lr", "3e-4", "--learning_starts", "100", "--buffer_size", str(steps), "--replay_size", "256",
                "--train_frequency", "1", "--tau", "0.005", "--hidden_size", "256"],
        "ppo": ["--n_steps", "2048", "--batch_size", "64", "--n_epochs", "10", "--lr", "3e-4"],
        "dqn": ["--lr", "1e-3", "--replay_size", "64", "--buffer_size", "50000", "--learning_starts", "1000",
                "--train_frequency", "4", "--target_update_interval", "250", "--exploration_steps", "5000",
                "--epsilon_end", "0.05", "--hidden_size", "128"],
    }[algorithm]


SB3_SCRIPT = """
import json, sys, time
started = time.perf_counter()
import gymnasium as gym, numpy as np, torch
import stable_baselines3 as sb3
algorithm, env_id = sys.argv[1], sys.argv[2]
steps, seed, episodes = (int(value) for value in sys.argv[3:6])
env = gym.make(env_id)
kwargs = {
    "sac": dict(learning_rate=3e-4, buffer_size=steps, learning_starts=100, batch_size=256, tau=0.005, gamma=0.99,
                train_freq=1, gradient_steps=1, policy_kwargs=dict(net_arch=[256, 256])),
    "ppo": dict(n_steps=2048, batch_size=64, n_epochs=10, learning_rate=3e-4),
    "dqn": dict(learning_rate=1e-3, batch_size=64, buffer_size=50000, learning_starts=1000, train_freq=4,
                gradient_steps=1, target_update_interval=250, exploration_fraction=min(1.0, 5000 / steps),
                exploration_final_eps=0.05, max_grad_norm=10, tau=1.0, policy_kwargs=dict(net_arch=[128, 128])),
}[algorithm]
model = getattr(sb3, algorithm.upper())("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
model.learn(steps)
returns = []
for k in range(episodes):
    observation, _ = env.reset(seed=seed + 1000 + k)
    total, done = 0.0, False
    while not done:
        action, _ = model.predict(observation, deterministic=True)
        observation, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    returns.append(total)
print(json.dumps({"return": float(np.mean(returns))}))
"""


def command(implementation: str, algorithm: str, env: str, steps: int, seed: int, episodes: int,
            folder: Path) -> list[str]:
    if implementation == "sylvan":
        return [sys.executable, str(REPO / "cli.py"), "--setting", "traditional_rl", "--nb_tasks", "1", "--method",
                algorithm, "--env", env, "--steps_per_task", str(steps), "--eval_episodes", str(episodes),
                "--seed", str(seed), "--accelerator", "cpu", "--progress_bar", "false", "--save_checkpoints", "false",
                "--results_dir", str(folder), "--run_name", "run", *sylvan_options(algorithm, steps)]
    if implementation == "sb3":
        return [sys.executable, "-c", SB3_SCRIPT, algorithm, env, str(steps), str(seed), str(episodes)]
    return [sys.executable, str(REPO / "benchmarks" / "plain_rl_loops.py"), algorithm, "--env", env, "--steps",
            str(steps), "--seed", str(seed), "--eval_episodes", str(episodes)]


def run_one(implementation: str, algorithm: str, env: str, steps: int, seed: int, episodes: int,
            core: int | None) -> dict:
    """One timed process; its final return, wall time, or error."""
    with tempfile.TemporaryDirectory() as folder:
        argv = command(implementation, algorithm, env, steps, seed, episodes, Path(folder))
        if core is not None:
            argv = ["taskset", "-c", str(core), *argv]
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=environment, cwd=REPO)
        wall = time.perf_counter() - started
        found = {"implementation": implementation, "algorithm": algorithm, "seed": seed, "wall": wall}
        if done.returncode != 0:
            return {**found, "error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
        if implementation == "sylvan":
            results = json.loads((Path(folder) / "run" / "results.json").read_text())
            return {**found, "return": results["return_matrix"][-1][0]}
        return {**found, "return": json.loads(done.stdout.strip().splitlines()[-1])["return"]}


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):9.1f} ± {deviation:6.1f}  [{min(values):.1f}, {max(values):.1f}]"


def welch_p(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import ttest_ind

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def report(algorithm: str, env: str, steps: int, runs: list[dict]) -> list[str]:
    header = f"  {'implementation':<15} {'final return (mean ± std [min, max])':<44} {'wall s':>8}"
    lines = [f"{algorithm} on {env}, {steps} steps", header]
    by = {impl: [r for r in runs if r["implementation"] == impl and "return" in r]
          for impl in ("sylvan", "sb3", "plain")}
    for impl, found in by.items():
        if found:
            lines.append(f"  {impl:<15} {spread([r['return'] for r in found]):<44} "
                         f"{statistics.mean(r['wall'] for r in found):8.1f}")
    for failed in (r for r in runs if "error" in r):
        lines.append(f"  {failed['implementation']} seed {failed['seed']} failed: {failed['error']}")
    ours = [r["return"] for r in by["sylvan"]]
    if by["sb3"] and ours:
        theirs = [r["return"] for r in by["sb3"]]
        within = min(theirs) <= statistics.mean(ours) <= max(theirs)
        p = welch_p(ours, theirs)
        lines.append(f"  sylvan's mean within the spread of stable-baselines3's seeds: {'yes' if within else 'no'}"
                     + ("" if p is None else f" (Welch's t-test p = {p:.2f})"))
        ratio = statistics.mean(r["wall"] for r in by["sylvan"]) / statistics.mean(r["wall"] for r in by["sb3"])
        lines.append(f"  sylvan's time / stable-baselines3's: {ratio:.2f} (target: at most 1)")
    if by["plain"] and by["sylvan"]:
        ratio = statistics.mean(r["wall"] for r in by["sylvan"]) / statistics.mean(r["wall"] for r in by["plain"])
        lines.append(f"  sylvan's time / the plain loop's: {ratio:.2f} (target: at most 1.10)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", nargs="+", default=["sac", "ppo", "dqn"], choices=["sac", "ppo", "dqn"])
    parser.add_argument("--env", help="the environment of sac and ppo (default: Hopper-v5)")
    parser.add_argument("--steps", type=int, help="environment steps of every run (default: per algorithm)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval_episodes", type=int, default=10)
    parser.add_argument("--implementations", nargs="+", default=["sylvan", "sb3", "plain"])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each on a core of its own")
    parser.add_argument("--quick", action="store_true", help="2,000 steps (dqn 3,000), seed 0, 2 episodes")
    parser.add_argument("--json", help="also write every run's figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.eval_episodes = [0], 2
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        args.implementations = [impl for impl in args.implementations if impl != "sb3"]
        print("stable-baselines3 is not installed: its runs are left out (pip install stable-baselines3)")
    plan = []
    for algorithm in args.algorithms:
        env = args.env if args.env and algorithm != "dqn" else DEFAULT_ENVS[algorithm]
        steps = (3000 if algorithm == "dqn" else 2000) if args.quick else (args.steps or DEFAULT_STEPS[algorithm])
        plan += [(impl, algorithm, env, steps, seed) for seed in args.seeds for impl in args.implementations]
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    free = sorted(cores)[-args.jobs:] if len(cores) >= args.jobs and os.path.exists("/usr/bin/taskset") else []

    idle: Queue[int | None] = Queue()  # a run takes a core no other run holds, and gives it back
    for core in free or [None] * args.jobs:
        idle.put(core)

    def work(item: tuple) -> dict:
        impl, algorithm, env, steps, seed = item
        core = idle.get()
        try:
            return {**run_one(impl, algorithm, env, steps, seed, args.eval_episodes, core), "env": env, "steps": steps}
        finally:
            idle.put(core)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(work, plan))
    for algorithm in args.algorithms:
        mine = [r for r in runs if r["algorithm"] == algorithm]
        print("\n".join(report(algorithm, mine[0]["env"], mine[0]["steps"], mine)), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
