"""Continual reinforcement learning: what an off-policy method's replay memory does to forgetting.

Three tasks of an environment whose physical attributes differ (CartPole-v1 by default: gravity,
pole mass and pole length; task 0: the environment as gymnasium defines it; tasks 1 and 2: each
attribute scaled by a factor drawn log-uniformly in [--min_scale, --max_scale] with the seed),
trained one after the other (`incremental_rl`, `task_incremental_rl`) or as one stream whose
dynamics drift from one task's values to the next (`continual_rl`). The off-policy method of
the environment's kind of actions (`dqn` for discrete ones, `sac` for continuous ones such as
Pendulum-v1's) runs with its usual replay memory (`fifo`: the latest transitions) and with a
reservoir (a uniform sample of the whole stream), next to `random`. Prints, per setting and
method, mean ± std over the seeds of the final average return (greedy episodes on every task
after the last one), the forgetting, the online return (the mean return of the episodes trained
on) and the wall time of a run.

    python benchmarks/continual_rl.py [--seeds 0 1 2] [--steps_per_task 10000] [--settings incremental_rl]
    python benchmarks/continual_rl.py --env Pendulum-v1 --steps_per_task 4000 --buffer_size 2000
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym

from sylvan.methods import DQN, SAC, Method, RandomMethod
from sylvan.settings import SETTINGS
from sylvan.settings.environments import make_env

METHODS = {
    "random": lambda args: RandomMethod(),
    "dqn (fifo)": lambda args: DQN(buffer_policy="fifo", buffer_size=args.buffer_size,
                                   learning_starts=args.learning_starts),
    "dqn (reservoir)": lambda args: DQN(buffer_policy="reservoir", buffer_size=args.buffer_size,
                                        learning_starts=args.learning_starts),
    "sac (fifo)": lambda args: SAC(buffer_policy="fifo", buffer_size=args.buffer_size,
                                   learning_starts=args.learning_starts),
    "sac (reservoir)": lambda args: SAC(buffer_policy="reservoir", buffer_size=args.buffer_size,
                                        learning_starts=args.learning_starts),
}


def default_methods(env_id: str) -> list[str]:
    """random, and the off-policy method of the environment's kind of actions with each memory."""
    env = make_env(env_id)
    learner = "dqn" if isinstance(env.action_space, gym.spaces.Discrete) else "sac"
    env.close()
    return ["random", f"{learner} (fifo)", f"{learner} (reservoir)"]


def run_one(setting_name: str, method: Method, seed: int, args: argparse.Namespace) -> dict[str, float | None]:
    setting = SETTINGS[setting_name](
        env=args.env, nb_tasks=args.nb_tasks, steps_per_task=args.steps_per_task, min_scale=args.min_scale,
        max_scale=args.max_scale, eval_episodes=args.eval_episodes, max_episode_steps=args.max_episode_steps,
        seed=seed, accelerator=args.accelerator,
    )
    start = time.perf_counter()
    results = setting.apply(method)
    return {
        "final": results.final_average_accuracy,
        "forgetting": results.forgetting,
        "online": results.online_accuracy,
        "seconds": time.perf_counter() - start,
    }


def mean_std(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    spread = statistics.stdev(present) if len(present) > 1 else 0.0
    return f"{statistics.mean(present):.1f} ± {spread:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["incremental_rl", "task_incremental_rl", "continual_rl"])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS),
                        help="default: random, and dqn or sac (by the kind of actions) with each memory")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--nb_tasks", type=int, default=3)
    parser.add_argument("--steps_per_task", type=int, default=10_000)
    parser.add_argument("--min_scale", type=float, default=0.5)
    parser.add_argument("--max_scale", type=float, default=2.0)
    parser.add_argument("--eval_episodes", type=int, default=10)
    parser.add_argument("--max_episode_steps", type=int, default=None, help="default: the environment's limit")
    parser.add_argument("--buffer_size", type=int, default=5_000, help="transitions in the replay memory")
    parser.add_argument("--learning_starts", type=int, default=1_000, help="steps before learning")
    parser.add_argument("--accelerator", default="cpu")
    args = parser.parse_args()
    args.methods = args.methods or default_methods(args.env)

    rows = []
    for setting_name in args.settings:
        for method_name in args.methods:
            runs = []
            for seed in args.seeds:
                run = run_one(setting_name, METHODS[method_name](args), seed, args)
                runs.append(run)
                print(f"{setting_name:20s} {method_name:16s} seed {seed}: final {run['final']:.1f}, "
                      f"forgetting {run['forgetting'] if run['forgetting'] is None else round(run['forgetting'], 1)}, "
                      f"online {run['online'] if run['online'] is None else round(run['online'], 1)}, "
                      f"{run['seconds']:.1f} s", flush=True)
            rows.append((setting_name, method_name, runs))

    print(f"\n{args.env}, {args.nb_tasks} tasks x {args.steps_per_task} steps, seeds {args.seeds}, "
          f"replay memory {args.buffer_size}: mean ± std")
    print("| setting | method | final average return | forgetting | online return | wall time (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for setting_name, method_name, runs in rows:
        cells = [mean_std([run[key] for run in runs]) for key in ("final", "forgetting", "online", "seconds")]
        print(f"| {setting_name} | {method_name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
