"""The accuracy-cost trade-off of the methods: each run's final average accuracy, training FLOPs,
inference FLOPs per test sample and memory (bytes the method holds at the end: its network and
everything it keeps beyond it), over seeds, on two streams, with the Pareto front of each.

- Seq-MNIST: MNIST as 5 tasks of 2 classes, MLP 784-100-100-10, 1 epoch per task, batch 10,
  each method with its recipe of `benchmarks/seq_mnist.py` (the DER paper's hyperparameters),
  every method on `task_incremental` (the one setting all of them apply to: the accuracy is
  task-IL);
- a generated stream of 20 tasks (`dataset_stream --stream_length 20`, from digits and
  synthetic, stream seed 0), the same recipes on its 8x8 images.

Every run is written with its results folder under `--out` (a run whose `results.json` is
complete is not run again, so an interrupted benchmark continues), then summarized by
`sylvan --summarize OUT/BENCHMARK --pareto OUT/BENCHMARK/pareto.png` (PNG and CSV).

    python benchmarks/pareto.py --data_dir ~/.cache/sylvan/data --out pareto-results [--seeds 0 1 2] [--jobs 2]
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

RECIPES = {  # the method's name in the table: its recipe in seq_mnist.RUNS
    "naive": "naive", "ewc": "ewc", "si": "si", "lwf": "lwf", "rehearsal": "er-200", "der": "der-200",
    "derpp": "derpp-200", "er_ace": "er_ace-200", "gdumb": "gdumb-4400", "icarl": "icarl-200",
    "multi_head": "multi_head", "pnn": "pnn", "packnet": "packnet", "hat": "hat",
    "hard_moe": "hard_moe", "selective_finetune": "selective_finetune", "mntdp": "mntdp",
}
BENCHMARKS = {
    "seq_mnist": {"setting": "task_incremental", "dataset": "mnist", "nb_tasks": 5},
    "stream_20": {"setting": "dataset_stream", "stream_length": 20, "forward_transfer": False},
}


def run_folder(out: Path, benchmark: str, method: str, seed: int) -> Path:
    return out / benchmark / f"{method}-seed{seed}"


def finished(folder: Path) -> bool:
    results = folder / "results.json"
    return results.is_file() and json.loads(results.read_text()).get("complete", False)


def run_one(job: tuple[str, str, int, str, str]) -> tuple[str, str, int, float]:
    """Run `method` on `benchmark` with `seed` into its folder; return its wall time (s)."""
    benchmark, method, seed, data_dir, out = job
    import torch

    torch.set_num_threads(1)
    from seq_mnist import RUNS

    from sylvan.run.experiment import RunOptions, run_experiment
    from sylvan.settings import SETTINGS

    recipe = RUNS[RECIPES[method]]
    options: dict[str, Any] = dict(BENCHMARKS[benchmark])
    setting_cls = SETTINGS[options.pop("setting")]
    setting = setting_cls(epochs=1, batch_size=recipe.batch_size or 10, seed=seed, data_dir=data_dir,
                          progress_bar=False, accelerator="cpu", **options)
    folder = run_folder(Path(out), benchmark, method, seed)
    start = time.perf_counter()
    run_experiment(setting, recipe.method(), RunOptions(results_dir=str(folder.parent), run_name=folder.name,
                                                        save_checkpoints=False))
    return benchmark, method, seed, time.perf_counter() - start


def figures(folder: Path) -> dict[str, float]:
    results = json.loads((folder / "results.json").read_text())
    cost = results["cost"]
    return {"accuracy": 100 * results["final_average_accuracy"], "training_flops": cost["training_flops"],
            "inference_flops": cost["inference_flops_per_sample"], "memory_bytes": cost["memory_bytes"]}


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    mean = statistics.mean(values) / scale
    std = statistics.stdev(values) / scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def table(out: Path, benchmark: str, methods: list[str], seeds: list[int]) -> list[str]:
    lines = [f"{benchmark}, {len(seeds)} seeds (mean ± std)",
             f"{'method':>11} | {'accuracy (%)':>14} | {'training GFLOP':>16} | {'inference kFLOP':>15} | "
             f"{'memory (KiB)':>13}"]
    for method in methods:
        runs = [figures(run_folder(out, benchmark, method, seed)) for seed in seeds]
        inference = statistics.mean(r["inference_flops"] for r in runs) / 1e3
        memory = statistics.mean(r["memory_bytes"] for r in runs) / 2**10
        lines.append(f"{method:>11} | {spread([r['accuracy'] for r in runs]):>14} | "
                     f"{spread([r['training_flops'] for r in runs], 1e9, 1):>16} | {inference:>15.1f} | "
                     f"{memory:>13.1f}")
    return lines


def main() -> None:
    from sylvan.settings.online import DEFAULT_DATA_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=Path("pareto-results"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--benchmarks", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    jobs = [(benchmark, method, seed, args.data_dir, str(args.out)) for benchmark in args.benchmarks
            for method in args.methods for seed in args.seeds
            if not finished(run_folder(args.out, benchmark, method, seed))]
    print(f"pareto: {len(jobs)} runs to go", flush=True)
    with multiprocessing.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        for benchmark, method, seed, seconds in pool.imap_unordered(run_one, jobs):
            print(f"{benchmark:>10} {method:>11} seed {seed}: {seconds:.1f} s", flush=True)
    from sylvan.cli import run as sylvan

    for benchmark in args.benchmarks:
        print()
        print("\n".join(table(args.out, benchmark, args.methods, args.seeds)))
        plot = args.out / benchmark / "pareto.png"
        sylvan(["--summarize", str(args.out / benchmark), "--pareto", str(plot)])
        print(f"Pareto plot: {plot} (figures: {plot.with_suffix('.csv')})")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
