"""Continual World (Wołczyk et al., NeurIPS 2021) with sylvan: SAC on a sequence of Meta-World
tasks, every continual-learning method of its table applied to it, and its three metrics
(performance, forgetting, forward transfer; `sylvan.analysis.continual_world`) with their spread
over seeds, beside the paper's CW20 row of each method.

Each run is sylvan's command line in a process of its own (one torch thread, a core of its own
where `taskset` is there), its folder kept under `--out` (a finished run is not made again, so the
benchmark continues where it stopped). First the reference runs (each task alone, `traditional_rl`,
stored in `--out`/references once per task and seed) and multi-task SAC (`multi_task_rl`), then
every method on the sequence, on `task_incremental_rl` as Continual World runs it (a head per task,
the task known at training and test; `--setting incremental_rl`: one head, no task id). Printed:
the single-task curves (mean success per evaluation point), the table of the three metrics
(mean ± std over seeds), the claims of the paper tested on the seeds (paired t-tests), and where
the figure is (each method's success per task along the stream, multi-task SAC's performance as
the reference line).

    python benchmarks/continual_world.py --quick             # minutes: the pipeline works
    python benchmarks/continual_world.py --jobs 2            # the reduced protocol this machine runs
    python benchmarks/continual_world.py --protocol cw20 --print   # the full protocol's commands
    python benchmarks/continual_world.py --report            # the table of the runs finished so far
    python benchmarks/continual_world.py --steps_per_task 150000 --out cw_150k --jobs 16   # a longer reduced protocol
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Queue

REPO = Path(__file__).resolve().parents[1]

# Continual World's results.csv, CW20 at 1M steps per task: performance, forgetting, forward transfer
PAPER_CW20 = {
    "fine-tuning": (0.05, 0.73, 0.20), "l2": (0.43, 0.02, -0.73), "ewc": (0.60, 0.02, -0.18),
    "mas": (0.51, 0.00, -0.52), "packnet": (0.80, 0.00, 0.18), "reservoir": (0.12, 0.07, -1.34),
    "agem": (0.07, 0.71, 0.15), "clear": (None, None, None), "multi-task": (0.55, None, None),
}
METHODS = tuple(PAPER_CW20)


def protocol(name: str, steps_per_task: int | None = None) -> dict:
    """The task sequence, the steps, SAC's options and each method's, of a protocol: `cw10` and
    `cw20` (Continual World's: 1M steps per task, SAC 4 x 256 with its layer norm and leaky ReLU,
    batch 128, lr 1e-3, L2 1e5, EWC and MAS 1e4, PackNet retraining 100k steps, A-GEM 10k
    transitions per task, replay 1M), `reduced` (what a 2-core machine runs in under three hours: two
    tasks, 75k steps each, SAC 2 x 64 with a gradient step of 256 transitions every second step,
    which learns each of them by then, as the single-task curves of docs/benchmarks/continual-world.md
    show; the coefficients as the paper's), `quick` (two tasks, a few thousand steps: the pipeline works).
    `steps_per_task`: the protocol's steps per task replaced (its evaluation interval, PackNet's
    retraining, A-GEM's transitions per task and the memories follow)."""
    batch, every = 128, 1  # transitions per gradient step, environment steps per gradient step
    if name in ("cw10", "cw20"):
        tasks, steps, hidden, layers, episodes, starts = [name.upper()], 1_000_000, 256, 4, 10, 10_000
    elif name == "reduced":
        tasks, steps, hidden, layers = ["faucet-close-v3", "handle-press-side-v3"], 75_000, 64, 2
        episodes, starts, batch, every = 10, 1000, 256, 2
    elif name == "quick":
        tasks, steps, hidden, layers, episodes, starts = ["window-close-v3", "faucet-close-v3"], 1000, 32, 2, 2, 200
        batch, every = 256, 2
    else:
        raise ValueError(f"unknown protocol {name!r}")
    if steps_per_task is not None:
        if steps_per_task < 10:
            raise ValueError(f"--steps_per_task must be at least 10, got {steps_per_task}")
        steps = steps_per_task
    nb_tasks = 20 if name == "cw20" else 10 if name == "cw10" else len(tasks)
    memory = nb_tasks * steps  # a replay of the whole stream
    per_task = 10_000 if steps >= 1_000_000 else max(steps // 10, 100)  # A-GEM's transitions per task
    sac = ["--hidden_size", str(hidden), "--hidden_layers", str(layers), "--cw_network", "true",
           "--replay_size", str(batch), "--train_frequency", str(every), "--lr", "1e-3",
           "--tau", "0.005", "--learning_starts", str(starts), "--buffer_size", str(steps)]
    return {
        "tasks": tasks, "steps": steps, "eval_every": 20_000 if steps >= 1_000_000 else steps // 10,
        "eval_episodes": episodes, "sac": sac,
        "methods": {
            "fine-tuning": ["--method", "sac", "--reset_on_task", "true"],
            "l2": ["--method", "l2", "--agent", "sac", "--l2_lambda", "1e5", "--reset_on_task", "true"],
            "ewc": ["--method", "ewc", "--agent", "sac", "--ewc_lambda", "1e4", "--reset_on_task", "true"],
            "mas": ["--method", "mas", "--agent", "sac", "--mas_lambda", "1e4", "--reset_on_task", "true"],
            "packnet": ["--method", "packnet", "--agent", "sac", "--retrain_steps", str(steps // every // 10),
                        "--reset_on_task", "true"],
            "agem": ["--method", "agem", "--agent", "sac", "--agem_buffer_size", str(per_task * nb_tasks),
                     "--reference_batch_size", "128", "--reset_on_task", "true"],
            "reservoir": ["--method", "sac", "--buffer_policy", "reservoir", "--buffer_size", str(memory)],
            "clear": ["--method", "clear", "--agent", "sac", "--memory_size", str(memory), "--reset_on_task", "true"],
        },
    }


def common(spec: dict, setting: str, seed: int, out: Path) -> list[str]:
    return ["--setting", setting, "--task_envs", *spec["tasks"], "--steps_per_task", str(spec["steps"]),
            "--eval_every", str(spec["eval_every"]), "--eval_episodes", str(spec["eval_episodes"]),
            "--max_episode_steps", "200",  # Continual World's episodes
            "--seed", str(seed), "--accelerator", "cpu", "--progress_bar", "false", "--results_dir", str(out / "runs")]


def plan(spec: dict, setting: str, seeds: list[int], out: Path, methods: list[str]) -> tuple[list, list]:
    """(the runs that come first: references and multi-task; the methods' runs), each as (run name, options)."""
    heads = ["--multihead", "true"] if setting != "incremental_rl" else []
    nb_tasks = 20 if spec["tasks"] == ["CW20"] else 10 if spec["tasks"] == ["CW10"] else len(spec["tasks"])
    first, then = [], []
    for seed in seeds:
        for task in range(nb_tasks):
            first.append((f"reference-task{task}-seed{seed}", [
                *common(spec, "traditional_rl", seed, out), "--task", str(task), "--method", "sac", *spec["sac"],
                "--reference_dir", str(out / "references")]))
        if "multi-task" in methods:
            first.append((f"multi-task-seed{seed}", [*common(spec, "multi_task_rl", seed, out), "--method", "sac",
                                                     *spec["sac"], "--multihead", "true"]))
        for method in methods:
            if method == "multi-task":
                continue
            options = spec["methods"][method]
            if method == "reservoir":  # the memory of the whole stream replaces the fifo of a task
                sac = [option for k, option in enumerate(spec["sac"])
                       if option != "--buffer_size" and (k == 0 or spec["sac"][k - 1] != "--buffer_size")]
            else:
                sac = spec["sac"]
            then.append((f"{method}-seed{seed}", [*common(spec, setting, seed, out), *options, *sac, *heads,
                                                  "--reference_dir", str(out / "references")]))
    return first, then


def stored_options(folder: Path) -> dict | None:
    """The setting's and method's options of the run kept in `folder` (its `config.yaml`), None where there is none."""
    from sylvan.cli.config_files import load_config

    config = folder / "config.yaml"
    if not config.is_file():
        return None
    stored = load_config(str(config))
    return {**stored.get("setting_options", {}), **stored.get("method_options", {})}


def option_values(argv: list[str]) -> dict[str, list[str]]:
    """Each `--name` of a command with the values that follow it."""
    values: dict[str, list[str]] = {}
    name = None
    for word in argv:
        if word.startswith("--"):
            name = word[2:]
            values[name] = []
        elif name is not None:
            values[name].append(word)
    return values


def same_value(stored: object, given: list[str]) -> bool:
    """Whether a stored option's value is the one a command gives (`1e-3` is 0.001, `true` is True)."""
    if isinstance(stored, list):
        return [str(v) for v in stored] == given
    if len(given) != 1:
        return False
    if isinstance(stored, bool):
        return given[0].lower() == str(stored).lower()
    if isinstance(stored, (int, float)):
        try:
            return float(given[0]) == float(stored)
        except ValueError:
            return False
    return given[0] == str(stored)


def check_out(out: Path, runs: list) -> None:
    """Refuse an `--out` holding a run of the same name made with other options (a finished run is
    not made again: it would stand in the table for this protocol's)."""
    for name, argv in runs:
        stored = stored_options(out / "runs" / name)
        if stored is None:
            continue
        for option, given in option_values(argv).items():
            if option in stored and not same_value(stored[option], given):
                raise SystemExit(f"continual_world: {out / 'runs' / name} holds a run made with --{option} "
                                 f"{stored[option]}, this protocol's is {' '.join(given)}; give the protocol an "
                                 "--out of its own")


def finished(out: Path, name: str) -> dict | None:
    path = out / "runs" / name / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    return results if results.get("complete") else None


def launch(argv: list[str], core: int | None) -> subprocess.CompletedProcess:
    argv = [sys.executable, *argv]
    return subprocess.run(["taskset", "-c", str(core), *argv] if core is not None else argv, capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def run_all(runs: list, out: Path, jobs: int) -> None:
    """Each run not finished yet, `jobs` at a time, each on a core of its own."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    idle: Queue = Queue()
    for core in (cores[-jobs:] if len(cores) >= jobs and Path("/usr/bin/taskset").exists() else [None] * jobs):
        idle.put(core)

    def one(item: tuple[str, list[str]]) -> None:
        name, options = item
        if finished(out, name) is not None:
            return
        core = idle.get()
        try:
            folder = out / "runs" / name
            started = time.perf_counter()
            if any((folder / "checkpoints").glob("*")):  # stopped before its end: continued from its last task's end
                done = launch([str(REPO / "cli.py"), "--resume", str(folder)], core)
            else:
                if folder.exists():  # stopped before its first checkpoint
                    shutil.rmtree(folder)
                done = launch([str(REPO / "cli.py"), *options, "--run_name", name], core)
            status = "done" if done.returncode == 0 else f"FAILED: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
            print(f"  {name}: {status} ({time.perf_counter() - started:.0f} s)", flush=True)
        finally:
            idle.put(core)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, runs))


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


SIGNIFICANCE = 0.05  # a claim of a difference holds where its test's p-value is below this
NOISE = 0.05  # forgetting this small in every seed is noise (one episode of ten at evaluation is 0.1)


def paired_p(a: list[float], b: list[float], alternative: str = "two-sided") -> float | None:
    """The paired t-test's p-value of a - b (seed by seed)."""
    if len(a) < 2 or len(a) != len(b) or all(x == y for x, y in zip(a, b)):
        return None
    from scipy.stats import ttest_rel

    p = float(ttest_rel(a, b, alternative=alternative).pvalue)
    return None if math.isnan(p) else p  # the same difference in every seed: nothing to test


def one_sample_p(values: list[float], alternative: str = "two-sided") -> float | None:
    if len(values) < 2 or statistics.pstdev(values) == 0:
        return None
    from scipy.stats import ttest_1samp

    return float(ttest_1samp(values, 0.0, alternative=alternative).pvalue)


def metric(results: list[dict], key: str) -> list[float]:
    return [r[key] for r in results if r.get(key) is not None]


def forgettable(result: dict) -> tuple[float, float]:
    """(forgetting, success at the task's end) of a run, each the mean over the tasks before the last:
    the last has no later task to forget it by, and Continual World's forgetting, a mean over every
    task, counts it as 0 (on two tasks that halves what the first loses)."""
    from sylvan.analysis.continual_world import success_at_end, success_at_task_end

    curve = result["evaluation_curve"]
    ends = success_at_task_end(curve["steps"], curve["success"], result["task_spans"])[:-1]
    final = success_at_end(curve["steps"], curve["success"], result["task_spans"])[:-1]
    return statistics.mean(e - f for e, f in zip(ends, final)), statistics.mean(ends)


def claims(found: dict[str, list[dict]]) -> list[str]:
    """The paper's claims, each with its figures and test over the seeds (paired by seed)."""
    lines = []

    def forgetting(method: str) -> list[float]:
        return metric(found.get(method, []), "cw_forgetting")

    tuning = found.get("fine-tuning", [])
    if tuning:  # the reduced protocol's condition, which the claims about forgetting rest on
        ends = [[r["success_matrix"][j][j] for r in tuning] for j in range(len(tuning[0]["success_matrix"]))]
        short = sum(value < 0.8 for task in ends for value in task)
        lines.append("fine-tuning's success at each task's end, seed by seed (the protocol asks at least 0.8): "
                     + ", ".join(f"T{j} " + " ".join(f"{v:.1f}" for v in task) for j, task in enumerate(ends))
                     + ("; met" if not short else f"; not met in {short} of {sum(map(len, ends))}"))
    if tuning:
        lost, learned = zip(*(forgettable(r) for r in tuning))
        excess = [f - 0.5 * s for f, s in zip(lost, learned)]
        p = one_sample_p(excess, "greater")
        holds = statistics.mean(excess) >= 0
        lines.append(f"fine-tuning forgets at least half its end-of-task success (the tasks before the last): "
                     f"forgetting {spread(list(lost))}, end-of-task success {spread(list(learned))}; "
                     f"{'holds' if holds else 'does not hold'} (one-sided t-test of forgetting - success / 2 > 0: "
                     f"{p_text(p)})")
    if found.get("packnet"):
        lost = forgetting("packnet")
        p = one_sample_p(lost)
        holds = p is None and max(map(abs, lost), default=1.0) <= NOISE or p is not None and p >= SIGNIFICANCE
        lines.append(f"packnet forgets nothing beyond noise: forgetting {spread(lost)} "
                     f"(t-test against 0: {p_text(p)}); {'holds' if holds else 'does not hold'}")
        own = metric(found["packnet"], "cw_performance")
        above = []
        for other in ("l2", "ewc", "mas", "agem", "reservoir", "clear", "fine-tuning"):
            theirs = metric(found.get(other, []), "cw_performance")
            if theirs and own:
                p = paired_p(own, theirs, "greater")
                lines.append(f"  packnet's performance above {other}'s: {spread(own)} vs {spread(theirs)} "
                             f"(paired one-sided {p_text(p)})")
                if statistics.mean(theirs) >= statistics.mean(own):
                    above.append(other)
        lines.append("packnet has the highest performance among the continual methods: "
                     + ("holds" if not above else f"does not hold ({', '.join(above)} as high or higher)"))
    for other in ("ewc", "mas", "l2", "agem"):
        if found.get(other) and tuning:
            kind = "two-sided" if other == "agem" else "less"
            verb = "forgets about as much as" if other == "agem" else "forgets less than"
            mine, tuned = forgetting(other), forgetting("fine-tuning")
            p = paired_p(mine, tuned, kind)
            if len(mine) < 2 or len(mine) != len(tuned):
                holds = None
            elif other == "agem":
                holds = p >= SIGNIFICANCE if p is not None else mine == tuned
            else:
                holds = p < SIGNIFICANCE if p is not None else all(a < b for a, b in zip(mine, tuned))
            lines.append(f"{other} {verb} fine-tuning: forgetting {spread(mine)} vs {spread(tuned)} "
                         f"(paired {kind} {p_text(p)}); {VERDICTS[holds]}")
    return lines


VERDICTS = {True: "holds", False: "not shown", None: "undecided: not every seed of both is done"}


def p_text(p: float | None) -> str:
    """A test's p-value as the claims print it; None where there was nothing to test."""
    return "no test: fewer than two seeds, or no spread" if p is None else f"p = {p:.3f}"


def figure(found: dict[str, list[dict]], reference: float | None, path: Path) -> None:
    """Each method's mean success per task along the stream (one panel each), multi-task SAC's
    performance as the line."""
    import numpy as np
    from matplotlib.figure import Figure

    methods = [m for m in found if m != "multi-task" and found[m]]
    fig = Figure(figsize=(4.2 * min(len(methods), 4), 2.8 * ((len(methods) + 3) // 4)))
    axes = np.atleast_1d(fig.subplots((len(methods) + 3) // 4, min(len(methods), 4), squeeze=False)).ravel()
    for ax, method in zip(axes, methods):
        runs = found[method]
        steps = runs[0]["evaluation_curve"]["steps"]
        mean = np.mean([r["evaluation_curve"]["success"] for r in runs], axis=0)
        for j, span in enumerate(runs[0]["task_spans"]):
            ax.axvspan(*span, color=f"C{j % 10}", alpha=0.08, linewidth=0)
            ax.plot(steps, mean[:, j], color=f"C{j % 10}", linewidth=1.2, label=f"T{j}")
        if reference is not None:
            ax.axhline(reference, color="black", linestyle="--", linewidth=1, label="multi-task")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{method} ({len(runs)} seeds)", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(methods):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6, loc="best")
    fig.supxlabel("environment steps of the stream", fontsize=8)
    fig.supylabel("success rate", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def report(spec: dict, out: Path, seeds: list[int], methods: list[str]) -> list[str]:
    nb_tasks = 20 if spec["tasks"] == ["CW20"] else 10 if spec["tasks"] == ["CW10"] else len(spec["tasks"])
    lines = ["single-task curves (traditional_rl; mean success over the seeds at each evaluation):"]
    for task in range(nb_tasks):
        runs = [r for seed in seeds if (r := finished(out, f"reference-task{task}-seed{seed}"))]
        if runs:
            curve = [statistics.mean(r["evaluation_curve"]["success"][p][0] for r in runs)
                     for p in range(len(runs[0]["evaluation_curve"]["steps"]))]
            end = spread([r["cw_performance"] for r in runs])
            lines.append(f"  T{task} {spec['tasks'][task] if len(spec['tasks']) > 1 else task}: "
                         + " ".join(f"{s:.2f}" for s in curve) + f"   (end {end})")
    found = {m: [r for seed in seeds if (r := finished(out, f"{m}-seed{seed}"))] for m in methods}
    header = f"{'method':<12} {'seeds':>5}  {'performance':<13} {'forgetting':<13} {'fwd transfer':<13}  CW20 (paper)"
    lines += ["", header, "-" * len(header)]
    for method, runs in found.items():
        paper = " / ".join("-" if v is None else f"{v:.2f}" for v in PAPER_CW20[method])
        figures = [spread(metric(runs, key)) for key in ("cw_performance", "cw_forgetting", "cw_forward_transfer")]
        lines.append(f"{method:<12} {len(runs):>5}  " + "".join(f"{f:<13} " for f in figures) + f" {paper}")
    lines += ["", *claims(found)]
    tasks_mt = metric(found.get("multi-task", []), "cw_performance")
    if any(found[m] for m in found if m != "multi-task"):
        path = out / "continual_world.png"
        figure(found, statistics.mean(tasks_mt) if tasks_mt else None, path)
        lines.append(f"\nfigure: {path}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", default="reduced", choices=["reduced", "quick", "cw10", "cw20"])
    parser.add_argument("--quick", action="store_true",
                        help="--protocol quick, seed 0, fine-tuning, ewc, packnet, multi-task")
    parser.add_argument("--setting", default="task_incremental_rl", choices=["task_incremental_rl", "incremental_rl"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each on a core of its own")
    parser.add_argument("--out", default="continual_world_results", help="where the runs' folders are kept")
    parser.add_argument("--steps_per_task", type=int,
                        help="the protocol's steps per task replaced (the evaluation interval, PackNet's "
                             "retraining, A-GEM's transitions and the memories follow)")
    parser.add_argument("--print", action="store_true", help="print the runs' commands, run nothing")
    parser.add_argument("--report", action="store_true",
                        help="print the table, the claims and the figure of the runs finished so far, run nothing")
    args = parser.parse_args()
    if args.quick:
        args.protocol, args.seeds, args.methods = "quick", [0], ["fine-tuning", "ewc", "packnet", "multi-task"]
    try:
        spec = protocol(args.protocol, args.steps_per_task)
    except ValueError as error:
        parser.error(str(error))
    out = Path(args.out).resolve()
    first, then = plan(spec, args.setting, args.seeds, out, args.methods)
    check_out(out, first + then)
    if args.print:
        for name, options in first + then:
            print(" ".join(["python cli.py", *options, "--run_name", name]))
        return
    if args.report:
        print("\n".join(report(spec, out, args.seeds, args.methods)))
        return
    print(f"Continual World, {args.protocol} protocol: {' '.join(spec['tasks'])}, {spec['steps']} steps per task, "
          f"seeds {' '.join(map(str, args.seeds))}, {args.setting}; runs in {out / 'runs'}", flush=True)
    run_all(first, out, args.jobs)
    run_all(then, out, args.jobs)
    print("\n".join(report(spec, out, args.seeds, args.methods)))


if __name__ == "__main__":
    main()
