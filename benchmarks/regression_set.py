"""The regression set: fixed runs whose accuracy (or return) matrices a refactoring must leave
identical, to the last digit.

Every registered method runs through the command line on its target setting (`task_incremental`
for the methods that need task labels; `class_incremental` for the ones that target the root),
on `digits` with seed 0, one epoch, 5 tasks; beside them a 2-worker `distributed` `rehearsal`
run on CPU workers, and short `incremental_rl` runs of `dqn`, `ppo` (CartPole) and `sac` (Pendulum), alone
and as the agents of `ewc` (sac) and `mas` (dqn).
Each run is a subprocess with one torch thread, so that its sums are taken in one order.

    python benchmarks/regression_set.py --record          # writes benchmarks/regression_set.json
    python benchmarks/regression_set.py                   # runs the set again and compares
    python benchmarks/regression_set.py --only rehearsal der   # some runs

The matrices depend on the machine's floating-point path (torch's build, the CPU's vector unit):
the file records the torch version and the platform it was made with, and a comparison on another
one says so beside any difference. The comparison exits 1 where a matrix differs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cli_runs import REPO, run_cli

RECORD = REPO / "benchmarks" / "regression_set.json"
DIGITS = ["--dataset", "digits", "--nb_tasks", "5", "--seed", "0", "--accelerator", "cpu", "--progress_bar", "false"]
RL = ["--nb_tasks", "2", "--steps_per_task", "300", "--eval_episodes", "2", "--max_episode_steps", "60",
      "--seed", "0", "--accelerator", "cpu"]
# the RL methods' options that let them learn within the short tasks (as the tests' TINY_METHOD_OPTIONS)
RL_RUNS = {
    "dqn": ["--setting", "incremental_rl", "--method", "dqn", "--env", "CartPole-v1", *RL, "--learning_starts", "50",
            "--buffer_size", "200", "--exploration_steps", "200", "--target_update_interval", "50",
            "--hidden_size", "32"],
    "sac": ["--setting", "incremental_rl", "--method", "sac", "--env", "Pendulum-v1", *RL, "--learning_starts", "50",
            "--buffer_size", "200", "--replay_size", "32", "--hidden_size", "32"],
    "ppo": ["--setting", "incremental_rl", "--method", "ppo", "--env", "CartPole-v1", *RL, "--n_steps", "64",
            "--batch_size", "32", "--n_epochs", "2"],
}
# the meta-learners' setting, osaka: a short stream over the digits pools, in two stages
OSAKA = ["--setting", "osaka", "--dataset", "digits", "--stream_steps", "300", "--pretraining_tasks", "200",
         "--stream_stages", "2", "--seed", "0", "--accelerator", "cpu", "--progress_bar", "false"]
# methods whose defaults take minutes on digits
METHOD_OPTIONS = {"eeil": ["--finetune_epochs", "2"]}


def runs() -> dict[str, list[str]]:
    """Each run's name and command-line options."""
    from sylvan.methods import METHODS
    from sylvan.registry import is_builtin
    from sylvan.settings import SETTINGS, ContinualRLSetting, OnlineSetting, Setting

    chosen: dict[str, list[str]] = {}
    for name, method in sorted((name, cls) for name, cls in METHODS.items() if is_builtin(cls)):
        target = method.target_setting
        if issubclass(target, ContinualRLSetting):  # an agent, or a method of that branch alone on dqn
            chosen[name] = RL_RUNS.get(name) or ["--setting", "incremental_rl", "--method", name, "--agent", "dqn",
                                                 *RL_RUNS["dqn"][4:]]
            continue
        if getattr(target, "pretraining_phase", False):
            chosen[name] = [*OSAKA, "--method", name]
            continue
        # a method for every setting (the tree's root) runs on the first with task boundaries
        if issubclass(target, Setting):
            setting = target.name if issubclass(target, OnlineSetting) else "class_incremental"
        else:  # an assumption both branches share: its first supervised setting
            setting = next(name for name, cls in SETTINGS.items() if issubclass(cls, OnlineSetting)
                           and issubclass(cls, target))
        epochs = [] if setting == "online" else ["--epochs", "1"]  # online is one pass
        chosen[name] = ["--setting", setting, "--method", name, *DIGITS, *epochs, *METHOD_OPTIONS.get(name, [])]
    for pair, agent in (("ewc", "sac"), ("mas", "dqn")):  # a continual-learning method on each agent
        chosen[f"{pair}-{agent}"] = ["--setting", "incremental_rl", "--method", pair, "--agent", agent,
                                     *RL_RUNS[agent][4:], f"--{pair}_lambda", "10"]
    chosen["distributed-rehearsal"] = ["--setting", "distributed", "--method", "rehearsal", "--devices", "2",
                                       *DIGITS, "--epochs", "1"]
    return chosen


def run(name: str, options: list[str]) -> dict:
    """The run's matrices (accuracy or return; task-aware where there is one), or its error."""
    done = run_cli(options, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    if done.status != 0:
        return {"error": f"exit {done.status}: {done.stderr.strip().splitlines()[-1:]}"}
    matrices = {key: done.results[key] for key in ("accuracy_matrix", "task_aware_matrix", "return_matrix")
                if key in done.results}
    return matrices or {"error": "results.json holds no accuracy or return matrix"}


def machine() -> dict[str, str]:
    import torch

    return {"torch": torch.__version__, "platform": f"{platform.system()} {platform.machine()}",
            "python": platform.python_version()}


def write_record(path: Path, options: dict[str, list[str]], matrices: dict[str, dict]) -> None:
    """The recording as JSON with one line per run's options and per run's matrices, so that a
    change to one run is one line of a diff."""
    def block(entries: dict) -> str:
        return ",\n".join(f"  {json.dumps(name)}: {json.dumps(entries[name])}" for name in sorted(entries))

    header = json.dumps(machine(), sort_keys=True)
    path.write_text(f'{{\n "machine": {header},\n "options": {{\n{block(options)}\n }},\n'
                    f' "runs": {{\n{block(matrices)}\n }}\n}}\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", action="store_true", help="write the matrices instead of comparing with them")
    parser.add_argument("--file", type=Path, default=RECORD)
    parser.add_argument("--only", nargs="+", help="these runs only (their names as in the file)")
    parser.add_argument("--jobs", type=int, default=max(1, os.cpu_count() or 1), help="runs at a time")
    args = parser.parse_args()
    recorded = json.loads(args.file.read_text()) if args.file.exists() else None
    if not args.record and recorded is None:
        sys.exit(f"regression_set: {args.file} does not exist; make it with --record")
    # a comparison runs the recorded commands, so that it compares like with like
    chosen = runs() if args.record else recorded["options"]
    if not args.record:
        for name in sorted(set(runs()) - set(chosen)):
            print(f"{name}: not in the recording (record it with --record --only {name})")
    if args.only:
        unknown = sorted(set(args.only) - set(chosen))
        if unknown:
            sys.exit(f"regression_set: unknown runs {unknown}; the runs are {sorted(chosen)}")
        chosen = {name: chosen[name] for name in args.only}
    with ThreadPoolExecutor(args.jobs) as pool:
        measured = dict(zip(chosen, pool.map(lambda item: run(*item), chosen.items())))
    failed = sorted(name for name, figures in measured.items() if "error" in figures)
    for name in failed:
        print(f"{name}: {measured[name]['error']}")
    if args.record:
        if failed:
            sys.exit("regression_set: nothing recorded, runs failed")
        kept = recorded if recorded and args.only else {"options": {}, "runs": {}}
        write_record(args.file, {**kept["options"], **chosen}, {**kept["runs"], **measured})
        print(f"recorded {len(measured)} runs in {args.file}")
        return
    differ = sorted(name for name, figures in measured.items()
                    if "error" not in figures and figures != recorded["runs"].get(name))
    for name in differ:
        print(f"{name}: differs\n  recorded {recorded['runs'].get(name)}\n  now      {measured[name]}")
    same = len(measured) - len(differ) - len(failed)
    print(f"{same} of {len(measured)} runs identical to the recording, {len(differ)} differ, {len(failed)} failed")
    if recorded["machine"] != machine():
        print(f"(recorded on {recorded['machine']}, compared on {machine()}: the figures of another torch build or "
              "processor may differ in the last digits without any change of the code)")
    sys.exit(1 if differ or failed else 0)


if __name__ == "__main__":
    main()
