"""A grid of rehearsal runs from Python, grouped in Weights & Biases, summarized as mean ± std.

Each configuration (buffer policy x buffer size) runs once per seed with `run_experiment`, which
writes the same run folder as the command line (so any run can be reproduced with
`sylvan --config_path RUN/config.yaml` or continued with `sylvan --resume RUN`). With
`--wandb_project`, every run logs to that project in one W&B group named after the grid, where
the runs of a configuration can be compared and averaged; without credentials W&B logs offline
in each run folder (`wandb sync` uploads it later). At the end the grid's table (mean ± std of
the final average accuracy over the seeds, and the forgetting) is printed and written to
`summary.csv` in the grid's folder.

    python examples/wandb_grid.py --wandb_project sylvan-grid
    python examples/wandb_grid.py --dataset mnist --policies reservoir class_balanced prs \\
        --buffer_sizes 200 500 --seeds 0 1 2 --wandb_project sylvan-grid
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

from sylvan.methods import Rehearsal
from sylvan.run.experiment import RunOptions, run_experiment
from sylvan.settings import get_setting


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="class_incremental", help="any supervised setting")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--policies", nargs="+", default=["reservoir", "class_balanced"], help="buffer policies")
    parser.add_argument("--buffer_sizes", nargs="+", type=int, default=[200])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--train_samples", type=int, default=None, help="a stratified subset of the training set")
    parser.add_argument("--results_dir", default="results", help="the grid's folder is made in it")
    parser.add_argument("--grid_name", default=None, help="folder and W&B group of the grid (default: grid-TIME)")
    parser.add_argument("--wandb_project", default=None, help="log every run to this W&B project")
    args = parser.parse_args()

    grid = args.grid_name or time.strftime("grid-%Y%m%d-%H%M%S")
    grid_dir = Path(args.results_dir) / grid
    setting_cls = get_setting(args.setting)
    rows = []
    for policy in args.policies:
        for size in args.buffer_sizes:
            accuracies, forgetting = [], []
            for seed in args.seeds:
                setting = setting_cls(dataset=args.dataset, seed=seed, train_samples=args.train_samples)
                method = Rehearsal(buffer_size=size, buffer_policy=policy)
                options = RunOptions(results_dir=str(grid_dir), run_name=f"{policy}-{size}-seed{seed}",
                                     wandb_project=args.wandb_project,
                                     wandb_group=grid if args.wandb_project else None)
                results = run_experiment(setting, method, options)
                accuracies.append(100 * results.final_average_accuracy)
                if results.forgetting is not None:
                    forgetting.append(100 * results.forgetting)
            rows.append({"policy": policy, "buffer_size": size, "seeds": len(args.seeds),
                         "final_average_accuracy": mean_std(accuracies),
                         "forgetting": mean_std(forgetting) if forgetting else "-"})

    with open(grid_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\n{args.setting} on {args.dataset}, rehearsal, seeds {args.seeds} (accuracy and forgetting in %):")
    print(f"{'policy':<16}{'buffer':>8}  {'final average accuracy':>24}  {'forgetting':>16}")
    for row in rows:
        print(f"{row['policy']:<16}{row['buffer_size']:>8}  {row['final_average_accuracy']:>24}  "
              f"{row['forgetting']:>16}")
    print(f"runs and summary.csv in {grid_dir}")


if __name__ == "__main__":
    main()
