"""Seq-MNIST, the protocol of Buzzega et al., "Dark Experience for General Continual Learning"
(NeurIPS 2020): MNIST as 5 class-incremental tasks of 2 classes, MLP 784-100-100-10, plain SGD,
1 epoch per task, batch 10. Prints class-IL and task-IL accuracy (mean ± std over seeds) and the
wall time of each run, next to the published class-IL figures.

    python benchmarks/seq_mnist.py --data_dir ~/.cache/sylvan/data [--seeds 0 1 2] [--only er-200 er-200-balanced]

MNIST must be under DATA_DIR/MNIST/raw (it is downloaded there when the network allows).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sylvan.errors import SylvanError
from sylvan.methods import Method, Naive, Rehearsal
from sylvan.settings import ClassIncrementalSetting
from sylvan.settings.online import DEFAULT_DATA_DIR

# name -> (method factory, published class-IL accuracy, published task-IL accuracy)
RUNS: dict[str, tuple[Callable[[], Method], float | None, float | None]] = {
    "naive": (lambda: Naive(lr=0.03, backbone="mlp"), 19.60, 94.94),
    "er-200": (lambda: Rehearsal(lr=0.01, buffer_size=200, replay_size=10, backbone="mlp"), 80.43, 97.86),
    "er-500": (lambda: Rehearsal(lr=0.1, buffer_size=500, replay_size=10, backbone="mlp"), 86.12, 99.04),
    # the replay-200 recipe with a class-balanced buffer instead of reservoir sampling (no published figure)
    "er-200-balanced": (
        lambda: Rehearsal(lr=0.01, buffer_size=200, replay_size=10, buffer_policy="class_balanced", backbone="mlp"),
        None, None,
    ),
}
DEFAULT_RUNS = ["naive", "er-200", "er-500"]


def run_one(name: str, seed: int, data_dir: str) -> dict[str, float]:
    setting = ClassIncrementalSetting(
        dataset="mnist", nb_tasks=5, batch_size=10, epochs=1, seed=seed, data_dir=data_dir,
        progress_bar=False,
    )
    start = time.perf_counter()
    results = setting.apply(RUNS[name][0]())
    return {
        "class_il": 100 * results.final_average_accuracy,
        "task_il": 100 * (results.task_aware_accuracy or 0.0),
        "seconds": time.perf_counter() - start,
    }


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):6.2f} ± {std:4.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), default=DEFAULT_RUNS)
    parser.add_argument("--output", type=Path, help="also write the raw figures to this JSON file")
    args = parser.parse_args()

    raw: dict[str, list[dict[str, float]]] = {}
    for name in args.only:
        raw[name] = []
        for seed in args.seeds:
            try:
                figures = run_one(name, seed, args.data_dir)
            except SylvanError as error:
                print(f"seq_mnist: error: {error}", file=sys.stderr)
                sys.exit(2)
            raw[name].append(figures)
            print(f"{name:>15} seed {seed}: class-IL {figures['class_il']:.2f}  task-IL "
                  f"{figures['task_il']:.2f}  ({figures['seconds']:.1f} s)", flush=True)
            if args.output:
                args.output.write_text(json.dumps(raw, indent=2))

    print(f"\nSeq-MNIST, {len(args.seeds)} seeds (mean ± std)")
    print(f"{'method':>15} | {'class-IL':>14} | {'published':>9} | {'task-IL':>14} | {'published':>9} | "
          f"{'time/run (s)':>14}")
    for name, runs in raw.items():
        _, published_class, published_task = RUNS[name]
        print(
            f"{name:>15} | {mean_std([r['class_il'] for r in runs])} | {published(published_class)} | "
            f"{mean_std([r['task_il'] for r in runs])} | {published(published_task)} | "
            f"{mean_std([r['seconds'] for r in runs])}"
        )


def published(value: float | None) -> str:
    return f"{value:9.2f}" if value is not None else f"{'-':>9}"


if __name__ == "__main__":
    main()
