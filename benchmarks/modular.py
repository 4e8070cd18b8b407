"""Modular continual learning, measured: hard mixtures of experts, selective fine-tuning and MNTDP-D
on the claims their papers make, offline (MNIST files and data generated in memory).

- `moe`: MNIST, an MLP with one hidden layer of 16 units (`mlp_16`, which underfits it), batch
  32, joint (one task of 10 classes) and class-incremental (5 tasks of 2). The single network
  (`naive`); `hard_moe` with K experts, K in {4, 8, 16}, each a whole such network gated by k-means
  over the trunk's hidden features (`--expert_modules 0`) or each the classifier alone over them
  (`--expert_modules 1`: the single network's inference cost); and the ensemble of K such networks
  (K runs of `naive` from other seeds, their softmax averaged: K times the cost). Accuracy,
  training FLOPs, inference FLOPs per sample, parameters; the accuracy-against-inference-FLOPs
  plot.
- `selective`: the offline CTrL streams S-, S+, S_in and S_out (`dataset_stream --stream
  s_minus_offline`, ...), whose last task is related to the first and whose four middle tasks are
  unrelated to anything before them: each task's final accuracy under `selective_finetune` and
  `from_scratch`, beside a fresh network trained on the task alone (the independent reference).
- `mntdp`: the offline S-, S+, S_in, S_out and S_pl: the transfer CTrL defines for each stream
  (the last task's final accuracy minus the independent reference's) for `mntdp`, `from_scratch`,
  `naive`, `ewc`, `rehearsal`, `pnn`, `packnet` and `hat`, and each method's final average accuracy.
- `long`: the offline S_long (100 tasks): the final average accuracy of `mntdp`, `naive`, `ewc`,
  `rehearsal`, `packnet`, `hat` and `from_scratch`, and the memory each task adds: `mntdp`'s
  measured, against a network per task (independent), `pnn`'s columns (its network built for k
  tasks; its training, whose every step runs the columns of all earlier tasks, is left out) and
  `from_scratch`'s one network.

Every run is written under `--out` (a complete run is not run again). Seeds 0, 1, 2 (S_long: seed 0,
`--long_seeds`), 3 epochs per task, batch 32. `--quick` runs 1 seed, 1 epoch and each part's
smallest cases, S_long left out: a few minutes on two CPU cores.

    python benchmarks/modular.py --data_dir ~/.cache/sylvan/data --out modular-results [--quick] [--jobs 2]
    python benchmarks/modular.py --parts mntdp long --methods ewc ...   # those methods' rows alone
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

EXPERTS = (4, 8, 16)
SHORT_STREAMS = ("s_minus", "s_plus", "s_in", "s_out", "s_pl")
RELATED_LAST = ("s_minus", "s_plus", "s_in", "s_out")  # streams whose last task is the first one, changed
MNTDP_BASELINES = ("mntdp", "from_scratch", "naive", "ewc", "rehearsal", "pnn", "packnet", "hat")
LONG_METHODS = ("mntdp", "naive", "ewc", "rehearsal", "packnet", "hat", "from_scratch")
ENSEMBLE_SEED = 1000  # ensemble member j of seed s: naive with seed ENSEMBLE_SEED * (j + 1) + s


PROTOCOLS = {"joint": 1, "class_il": 5}  # the MoE part's protocols: their numbers of tasks


def jobs_of(part: str, seeds: list[int], quick: bool, protocols: tuple[str, ...] = tuple(PROTOCOLS),
            ensembles: bool = True) -> list[tuple[str, str, dict[str, Any]]]:
    """The runs of `part`: (folder, method, options) each, options of the setting and method;
    the MoE part's for `protocols`, its ensembles' members where `ensembles`."""
    runs = []
    for seed in seeds:
        if part == "moe":
            experts = EXPERTS[:1] if quick else EXPERTS
            for protocol, tasks in ((protocol, PROTOCOLS[protocol]) for protocol in protocols):
                base = {"setting": "class_incremental", "dataset": "mnist", "nb_tasks": tasks, "backbone": "mlp_16",
                        "seed": seed}
                runs.append((f"moe/{protocol}/single-seed{seed}", "naive", base))
                for k in experts:
                    for owned in (0, 1):
                        runs.append((f"moe/{protocol}/moe{k}-e{owned}-seed{seed}", "hard_moe",
                                     {**base, "experts": k, "expert_modules": owned}))
                for member in range(max(experts) if ensembles else 0):
                    runs.append((f"moe/{protocol}/member{member}-seed{seed}", "naive",
                                 {**base, "seed": ENSEMBLE_SEED * (member + 1) + seed, "checkpoints": True}))
        elif part in ("selective", "mntdp"):
            streams = RELATED_LAST if part == "selective" else SHORT_STREAMS
            methods = ("selective_finetune", "from_scratch") if part == "selective" else MNTDP_BASELINES
            for stream in streams[:2] if quick else streams:
                base = {"setting": "dataset_stream", "stream": f"{stream}_offline", "seed": seed,
                        "forward_transfer": False}
                runs.append((f"ctrl/{stream}/independent-seed{seed}", "naive", {**base, "forward_transfer": True}))
                for method in methods[:3] if quick else methods:
                    runs.append((f"ctrl/{stream}/{method}-seed{seed}", method, base))
        elif part == "long":
            base = {"setting": "dataset_stream", "stream": "s_long_offline", "seed": seed, "forward_transfer": False}
            for method in LONG_METHODS[:2] if quick else LONG_METHODS:
                runs.append((f"long/{method}-seed{seed}", method, base))
    return list(dict.fromkeys((folder, method, json.dumps(options)) for folder, method, options in runs))


FAILED = "failed.txt"  # in a run's folder: the error that ended it (a diverged training), which the tables show


def finished(folder: Path) -> bool:
    results = folder / "results.json"
    complete = results.is_file() and json.loads(results.read_text()).get("complete", False)
    return complete or (folder / FAILED).is_file()


def run_one(job: tuple[str, str, str, str, str, int]) -> tuple[str, float]:
    """Run one job into its folder; return the folder and its wall time (s). A run that fails
    (a training that diverges) leaves its error in `FAILED` and the others go on."""
    folder, method_name, options_json, data_dir, out, epochs = job
    import torch

    torch.set_num_threads(1)
    from sylvan.methods import METHODS
    from sylvan.run.experiment import RunOptions, run_experiment
    from sylvan.settings import SETTINGS

    options = json.loads(options_json)
    setting_cls, checkpoints = SETTINGS[options.pop("setting")], options.pop("checkpoints", False)
    method_options = {name: options.pop(name) for name in ("experts", "expert_modules", "backbone") if name in options}
    setting = setting_cls(epochs=epochs, batch_size=32, data_dir=data_dir, progress_bar=False, accelerator="cpu",
                          **options)
    path = Path(out) / folder
    start = time.perf_counter()
    try:
        run_experiment(setting, METHODS[method_name](**method_options),
                       RunOptions(results_dir=str(path.parent), run_name=path.name, save_checkpoints=checkpoints))
    except Exception as error:  # noqa: BLE001 - any run's failure is a result of the benchmark
        path.mkdir(parents=True, exist_ok=True)
        (path / FAILED).write_text(f"{type(error).__name__}: {error}\n")
    return folder, time.perf_counter() - start


class RunFailed(Exception):
    """A run of the benchmark that ended in an error (`FAILED`)."""


def results(out: Path, folder: str) -> dict[str, Any]:
    if (out / folder / FAILED).is_file():
        raise RunFailed((out / folder / FAILED).read_text().split(":")[0])
    return json.loads((out / folder / "results.json").read_text())


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values) / scale
    std = statistics.stdev(values) / scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def paired(values: list[float], reference: list[float]) -> str:
    """`values` minus `reference`, seed by seed (a mixture's trunk is the single network of its
    seed): mean ± std of the differences and the paired t statistic (n - 1 degrees of freedom)."""
    differences = [value - base for value, base in zip(values, reference, strict=True)]
    if len(differences) < 2 or not any(differences):
        return "-"
    mean, std = statistics.mean(differences), statistics.stdev(differences)
    t = mean / (std / len(differences) ** 0.5) if std > 0 else float("inf")
    return f"{mean:+.2f} ± {std:.2f} ({t:+.1f})"


def ensemble_figures(out: Path, protocol: str, seed: int, k: int, data_dir: str) -> dict[str, float]:
    """The ensemble of the first `k` members of `seed`: its accuracy on the test set (softmax
    averaged; the mean of the tasks' accuracies), and its costs, the sum of its members'."""
    import torch

    from sylvan.models import build_backbone
    from sylvan.settings import ClassIncrementalSetting

    nb_tasks = 1 if protocol == "joint" else 5
    tasks = ClassIncrementalSetting(dataset="mnist", nb_tasks=nb_tasks, data_dir=data_dir,
                                    progress_bar=False).prepare_tasks()
    x, y = torch.cat([task.x_test for task in tasks]).float() / 255, torch.cat([task.y_test for task in tasks])
    task_of = torch.cat([torch.full((len(task.y_test),), i) for i, task in enumerate(tasks)])
    probabilities, members = torch.zeros(len(y), 10), []
    for member in range(k):
        folder = out / "moe" / protocol / f"member{member}-seed{seed}"
        last = max((folder / "checkpoints").glob("after_stage_*.pt"), key=lambda p: int(p.stem.split("_")[-1]))
        state = torch.load(last, weights_only=False)["method"]["model"]
        network = build_backbone("mlp_16", (1, 28, 28), 10)
        network.load_state_dict({name[len("model."):]: value for name, value in state.items()
                                 if name.startswith("model.")})
        with torch.no_grad():
            probabilities += network.eval()(x).softmax(1)
        members.append(results(out, f"moe/{protocol}/member{member}-seed{seed}")["cost"])
    correct = (probabilities.argmax(1) == y).float()  # the mean of the tasks' accuracies, as a run reports it
    accuracy = statistics.mean(float(correct[task_of == i].mean()) for i in range(nb_tasks))
    return {"accuracy": 100 * accuracy,
            "training_flops": sum(cost["training_flops"] for cost in members),
            "inference_flops": sum(cost["inference_flops_per_sample"] for cost in members),
            "parameters": sum(cost["parameters"] for cost in members)}


def moe_tables(out: Path, seeds: list[int], quick: bool, data_dir: str, protocols: tuple[str, ...] = tuple(PROTOCOLS),
               ensembles: bool = True) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    experts = EXPERTS[:1] if quick else EXPERTS
    lines = []
    figure = Figure(figsize=(4.5 * len(protocols), 4))
    for column, protocol in enumerate(protocols):
        rows: dict[str, list[dict[str, float]]] = {}

        def run_figures(folder: str) -> dict[str, float]:
            run = results(out, folder)
            cost = run["cost"]
            return {"accuracy": 100 * run["final_average_accuracy"], "training_flops": cost["training_flops"],
                    "inference_flops": cost["inference_flops_per_sample"], "parameters": cost["parameters"]}

        rows["single network"] = [run_figures(f"moe/{protocol}/single-seed{s}") for s in seeds]
        for k in experts:
            rows[f"hard_moe K={k}, whole experts"] = [run_figures(f"moe/{protocol}/moe{k}-e0-seed{s}") for s in seeds]
            rows[f"hard_moe K={k}, heads"] = [run_figures(f"moe/{protocol}/moe{k}-e1-seed{s}") for s in seeds]
            if ensembles:
                rows[f"ensemble K={k}"] = [ensemble_figures(out, protocol, s, k, data_dir) for s in seeds]
        lines += ["", f"Hard MoE, MNIST, mlp_16, {protocol}, {len(seeds)} seeds (mean ± std)",
                  f"{'model':>30} | {'accuracy (%)':>14} | {'training GFLOP':>15} | {'inference kFLOP':>15} | "
                  f"{'parameters':>10} | {'minus single, paired (t)':>24}"]
        axes = figure.add_subplot(1, len(protocols), column + 1)
        single = [r["accuracy"] for r in rows["single network"]]
        for name, runs in rows.items():
            inference = statistics.mean(r["inference_flops"] for r in runs) / 1e3
            accuracies = [r["accuracy"] for r in runs]
            versus = paired(accuracies, single) if name.startswith("hard_moe") else "-"  # its trunk: that network
            lines.append(f"{name:>30} | {spread(accuracies):>14} | "
                         f"{spread([r['training_flops'] for r in runs], 1e9, 1):>15} | {inference:>15.1f} | "
                         f"{statistics.mean(r['parameters'] for r in runs):>10.0f} | {versus:>24}")
            axes.errorbar(inference, statistics.mean(accuracies),
                          yerr=statistics.stdev(accuracies) if len(accuracies) > 1 else 0, fmt="o", label=name)
        axes.set_xscale("log")
        ticks = sorted({round(statistics.mean(r["inference_flops"] for r in runs) / 1e3, 1) for runs in rows.values()})
        axes.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
        axes.minorticks_off()
        axes.set_xlabel("inference kFLOP per sample")
        axes.set_ylabel("accuracy (%)")
        axes.set_title(protocol)
    figure.legend(*figure.axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=7,
                  bbox_to_anchor=(0.5, -0.22))
    figure.savefig(out / "moe" / "accuracy_vs_inference.png", dpi=120, bbox_inches="tight")
    lines.append(f"plot: {out / 'moe' / 'accuracy_vs_inference.png'}")
    return lines


def selective_tables(out: Path, seeds: list[int], quick: bool) -> list[str]:
    streams = RELATED_LAST[:2] if quick else RELATED_LAST
    groups: dict[str, dict[str, list[float]]] = {"related (last task)": {}, "unrelated (tasks 2-5)": {}}
    for stream in streams:
        for seed in seeds:
            reference = results(out, f"ctrl/{stream}/independent-seed{seed}")["independent_accuracies"]
            finals = {"independent": reference}
            for method in ("selective_finetune", "from_scratch")[: 3 if quick else 2]:
                finals[method] = results(out, f"ctrl/{stream}/{method}-seed{seed}")["accuracy_matrix"][-1]
            for name, accuracies in finals.items():
                groups["related (last task)"].setdefault(name, []).append(100 * accuracies[-1])
                groups["unrelated (tasks 2-5)"].setdefault(name, []).append(100 * statistics.mean(accuracies[1:5]))
    lines = ["", f"Selective fine-tuning, offline CTrL streams {', '.join(streams)}, {len(seeds)} seeds: "
             "final accuracy (%), mean ± std over streams and seeds"]
    for group, by_method in groups.items():
        lines.append(f"{group:>22}: " + ", ".join(f"{name} {spread(values)}" for name, values in by_method.items()))
    return lines


def mntdp_tables(out: Path, seeds: list[int], quick: bool, only: list[str] | None = None) -> list[str]:
    streams = SHORT_STREAMS[:2] if quick else SHORT_STREAMS
    methods = [m for m in (MNTDP_BASELINES[:3] if quick else MNTDP_BASELINES) if only is None or m in only]
    lines = ["", f"MNTDP-D and baselines, offline CTrL streams, {len(seeds)} seeds: transfer on the last task "
             "(its final accuracy minus a fresh network's trained on it alone), points; final average accuracy (%)",
             f"{'method':>13} | " + " | ".join(f"{stream:>13}" for stream in streams) + f" | {'mean accuracy':>13}"]
    for method in methods:
        cells, averages = [], []
        for stream in streams:
            transfers, failed = [], 0
            for seed in seeds:
                try:
                    run = results(out, f"ctrl/{stream}/{method}-seed{seed}")
                except RunFailed:
                    failed += 1
                    continue
                reference = results(out, f"ctrl/{stream}/independent-seed{seed}")["independent_accuracies"][-1]
                transfers.append(100 * (run["accuracy_matrix"][-1][-1] - reference))
                averages.append(100 * run["final_average_accuracy"])
            cell = spread(transfers, digits=1) if transfers else ""
            cells.append(cell + (f" ({failed} diverged)" if failed else ""))
        lines.append(f"{method:>13} | " + " | ".join(f"{cell:>13}" for cell in cells) + f" | {spread(averages):>13}")
    lines.append("a run that diverged (NaN weights) counts in neither its stream's transfer nor the mean accuracy")
    return lines


def long_tables(out: Path, seeds: list[int], quick: bool, only: list[str] | None = None) -> list[str]:
    from sylvan.methods.pnn import PNN
    from sylvan.settings import DatasetStreamSetting

    methods = [m for m in (LONG_METHODS[:2] if quick else LONG_METHODS) if only is None or m in only]
    lines = ["", f"Offline S_long (100 tasks), {len(seeds)} seeds: final average accuracy (%), network (MiB)"]
    for method in methods:
        try:
            runs = [results(out, f"long/{method}-seed{seed}") for seed in seeds]
        except RunFailed as error:
            lines.append(f"{method:>13}: {error} (its training diverged)")
            continue
        memory = statistics.mean(run["cost"]["network_bytes"] for run in runs) / 2**20
        accuracy = spread([100 * run["final_average_accuracy"] for run in runs])
        lines.append(f"{method:>13}: {accuracy:>14}, {memory:.2f} MiB")
    if "mntdp" not in methods:
        return lines
    per_stage = results(out, f"long/mntdp-seed{seeds[0]}")["cost"]["per_stage"]["network_bytes"]
    grown = [bytes_ / 2**20 for bytes_ in per_stage]
    one = grown[0]
    setting = DatasetStreamSetting(stream="s_long_offline", progress_bar=False)
    method = PNN()
    method.configure(setting)
    pnn = []
    for task in (1, 10, 25, 50, 100):
        method.grow_to(task)
        pnn.append(sum(p.numel() * p.element_size() for p in method.model.parameters()) / 2**20)
    lines.append("memory after k tasks (MiB), k = 1, 10, 25, 50, 100:")
    lines.append(f"{'mntdp':>13}: " + ", ".join(f"{grown[k - 1]:.2f}" for k in (1, 10, 25, 50, 100)))
    lines.append(f"{'independent':>13}: " + ", ".join(f"{one * k:.2f}" for k in (1, 10, 25, 50, 100)))
    lines.append(f"{'pnn':>13}: " + ", ".join(f"{value:.2f}" for value in pnn))
    lines.append(f"{'from_scratch':>13}: " + ", ".join(f"{one:.2f}" for _ in range(5))
                 + " (one network; past data from the stream)")
    return lines


def main() -> None:
    from sylvan.settings.online import DEFAULT_DATA_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=Path("modular-results"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (0 with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="per task (default: 3; 1 with --quick)")
    parser.add_argument("--long_seeds", type=int, nargs="+", default=[0], help="seeds of S_long (100 tasks each)")
    parser.add_argument("--parts", nargs="+", choices=("moe", "selective", "mntdp", "long"),
                        default=["moe", "selective", "mntdp", "long"])
    parser.add_argument("--moe_protocols", nargs="+", choices=tuple(PROTOCOLS), default=list(PROTOCOLS))
    parser.add_argument("--no_ensembles", action="store_true", help="the MoE part without its ensembles")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, the smallest cases")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="the CTrL and S_long parts with these methods alone (and the independent references)")
    args = parser.parse_args()
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    epochs = args.epochs or (1 if args.quick else 3)
    out = args.out / ("quick" if args.quick else f"epochs{epochs}")
    parts = [part for part in args.parts if not (args.quick and part == "long")]
    planned = {folder: (folder, method, options, args.data_dir, str(out), epochs) for part in parts
               for folder, method, options in jobs_of(part, args.long_seeds if part == "long" else seeds, args.quick,
                                                      tuple(args.moe_protocols), not args.no_ensembles)}
    if args.methods:  # the CTrL and S_long runs of those methods, beside the references they are measured by
        planned = {folder: job for folder, job in planned.items() if folder.startswith("moe/")
                   or job[1] in args.methods or "/independent-" in folder}
    todo = [job for folder, job in planned.items() if not finished(out / folder)]  # a run two parts share: once
    print(f"modular: {len(todo)} runs to go", flush=True)
    with multiprocessing.get_context("spawn").Pool(max(1, args.jobs), maxtasksperchild=1) as pool:
        for folder, seconds in pool.imap_unordered(run_one, todo):
            print(f"{folder}: {seconds:.1f} s", flush=True)
    tables = {"moe": lambda: moe_tables(out, seeds, args.quick, args.data_dir, tuple(args.moe_protocols),
                                        not args.no_ensembles),
              "selective": lambda: selective_tables(out, seeds, args.quick),
              "mntdp": lambda: mntdp_tables(out, seeds, args.quick, args.methods),
              "long": lambda: long_tables(out, args.long_seeds, False, args.methods)}
    for part in parts:
        print("\n".join(tables[part]()))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
