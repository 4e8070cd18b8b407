"""Seq-MNIST, the protocol of Buzzega et al., "Dark Experience for General Continual Learning"
(NeurIPS 2020): MNIST as 5 class-incremental tasks of 2 classes, MLP 784-100-100-10, plain SGD,
1 epoch per task, batch 10, each method with the paper's best hyperparameters (Mammoth's best
arguments). Prints class-IL and task-IL accuracy (mean ± std over seeds) and the wall time of
each run, next to the published figures (Table 2 of the paper; GDumb: the reproduced baseline on
Split-MNIST, memory 4,400, MLP 2x400, 10 epochs, batch 16).

    python benchmarks/seq_mnist.py --data_dir ~/.cache/sylvan/data [--seeds 0 1 2] [--only der-200 icarl-500]

MNIST must be under DATA_DIR/MNIST/raw (it is downloaded there when the network allows).
`joint` trains `naive` on `multi_task` (all tasks at once) and evaluates it both without task
labels (class-IL) and with them (task-IL). `multi_head` runs on `task_incremental`: it has no
class-IL figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sylvan.errors import SylvanError
from sylvan.methods import (
    AGEM,
    DER,
    ERACE,
    EWC,
    GEM,
    MIR,
    SI,
    DERPlusPlus,
    GDumb,
    ICaRL,
    LwF,
    Method,
    MultiHead,
    Naive,
    Rehearsal,
    StableSGD,
)
from sylvan.settings import SETTINGS, ClassIncrementalSetting
from sylvan.settings.online import DEFAULT_DATA_DIR

MLP = "mlp"


@dataclass(frozen=True)
class Run:
    """One row of the table: the method with its hyperparameters, the setting it runs on, and the
    published class-IL / task-IL accuracy (None where the paper has no figure)."""

    method: Callable[[], Method]
    published_class_il: float | None
    published_task_il: float | None
    setting: str = "class_incremental"
    batch_size: int = 10


RUNS: dict[str, Run] = {
    "naive": Run(lambda: Naive(lr=0.03, backbone=MLP), 19.60, 94.94),
    "ewc": Run(lambda: EWC(lr=0.03, ewc_lambda=90, gamma=1.0, backbone=MLP), 20.46, 98.39),
    "si": Run(lambda: SI(lr=0.1, c=1.0, xi=0.9, backbone=MLP), 19.27, 96.00),
    "lwf": Run(lambda: LwF(lr=0.03, alpha=1.0, temperature=2.0, weight_decay=5e-4, backbone=MLP), 19.62, 94.11),
    "stable_sgd": Run(lambda: StableSGD(lr=0.1, lr_decay=0.8, dropout=0.5, backbone=MLP), None, None),
    "er-200": Run(lambda: Rehearsal(lr=0.01, buffer_size=200, replay_size=10, backbone=MLP), 80.43, 97.86),
    "er-500": Run(lambda: Rehearsal(lr=0.1, buffer_size=500, replay_size=10, backbone=MLP), 86.12, 99.04),
    # the replay-200 recipe with a class-balanced buffer instead of reservoir sampling (no published figure)
    "er-200-balanced": Run(
        lambda: Rehearsal(lr=0.01, buffer_size=200, replay_size=10, buffer_policy="class_balanced", backbone=MLP),
        None, None,
    ),
    "gem-200": Run(lambda: GEM(lr=0.01, buffer_size=200, margin=1.0, backbone=MLP), 80.11, 97.78),
    "gem-500": Run(lambda: GEM(lr=0.03, buffer_size=500, margin=0.5, backbone=MLP), 85.99, 98.71),
    "agem-200": Run(lambda: AGEM(lr=0.1, buffer_size=200, reference_batch_size=128, backbone=MLP), 45.72, 98.61),
    "agem-500": Run(lambda: AGEM(lr=0.1, buffer_size=500, reference_batch_size=128, backbone=MLP), 46.66, 98.93),
    # the memory the paper's reference code keeps for A-GEM whatever the buffer size: its end_task stores one
    # training minibatch (10 samples at batch 10) per finished task; buffer 50 over 5 tasks is the same
    "agem-ref-memory": Run(lambda: AGEM(lr=0.1, buffer_size=50, reference_batch_size=128, backbone=MLP), None, None),
    "icarl-200": Run(lambda: ICaRL(lr=0.1, buffer_size=200, backbone=MLP), 70.51, 98.28),
    "icarl-500": Run(lambda: ICaRL(lr=0.1, buffer_size=500, backbone=MLP), 70.10, 98.32),
    "der-200": Run(lambda: DER(lr=0.03, buffer_size=200, replay_size=10, alpha=0.2, backbone=MLP), 84.55, 98.80),
    "der-500": Run(lambda: DER(lr=0.03, buffer_size=500, replay_size=128, alpha=1.0, backbone=MLP), 90.54, 98.84),
    "derpp-200": Run(
        lambda: DERPlusPlus(lr=0.03, buffer_size=200, replay_size=128, alpha=0.2, beta=1.0, backbone=MLP), 85.61, 98.76
    ),
    "derpp-500": Run(
        lambda: DERPlusPlus(lr=0.03, buffer_size=500, replay_size=10, alpha=1.0, beta=0.5, backbone=MLP), 91.00, 98.94
    ),
    # the er recipes above with the same update (MIR's loss adds the replay's mean to the minibatch's: twice er's
    # mean over b + r samples, so half er's lr), replaying the 10 most interfered of 50 candidates, not 10 at random
    "mir-200": Run(lambda: MIR(lr=0.005, buffer_size=200, replay_size=10, candidates=50, backbone=MLP), None, None),
    "mir-500": Run(lambda: MIR(lr=0.05, buffer_size=500, replay_size=10, candidates=50, backbone=MLP), None, None),
    "er_ace-200": Run(lambda: ERACE(lr=0.1, buffer_size=200, replay_size=10, backbone=MLP), None, None),
    "er_ace-500": Run(lambda: ERACE(lr=0.1, buffer_size=500, replay_size=10, backbone=MLP), None, None),
    "gdumb-4400": Run(lambda: GDumb(buffer_size=4400, backbone="mlp_400"), 97.0, None, batch_size=16),
    "multi_head": Run(lambda: MultiHead(lr=0.03, backbone=MLP), None, None, setting="task_incremental"),
    "joint": Run(lambda: Naive(lr=0.03, backbone=MLP), 95.57, 99.51, setting="multi_task"),
}
DEFAULT_RUNS = [name for name in RUNS if name != "er-200-balanced"]


def run_one(name: str, seed: int, data_dir: str) -> dict[str, float | None]:
    run = RUNS[name]
    options = dict(dataset="mnist", nb_tasks=5, batch_size=run.batch_size, epochs=1, seed=seed,
                   data_dir=data_dir, progress_bar=False)
    setting = SETTINGS[run.setting](**options)
    method = run.method()
    start = time.perf_counter()
    results = setting.apply(method)
    seconds = time.perf_counter() - start
    class_il = task_il = None
    if setting.task_labels_at_test:  # its own accuracy is task-aware; evaluate class-IL apart
        task_il = results.final_average_accuracy
        if run.setting == "multi_task":
            judge = ClassIncrementalSetting(**options)
            accuracies, _ = judge.evaluate(method, judge.prepare_tasks())
            class_il = statistics.mean(accuracies)
    else:
        class_il, task_il = results.final_average_accuracy, results.task_aware_accuracy
    return {
        "class_il": None if class_il is None else 100 * class_il,
        "task_il": None if task_il is None else 100 * task_il,
        "seconds": seconds,
    }


def mean_std(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return f"{'-':>14}"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):6.2f} ± {std:5.2f}"


def published(value: float | None) -> str:
    return f"{value:9.2f}" if value is not None else f"{'-':>9}"


def figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), default=DEFAULT_RUNS)
    parser.add_argument("--output", type=Path, help="also write the raw figures to this JSON file")
    args = parser.parse_args()

    raw: dict[str, list[dict[str, float | None]]] = {}
    for name in args.only:
        raw[name] = []
        for seed in args.seeds:
            try:
                figures = run_one(name, seed, args.data_dir)
            except SylvanError as error:
                print(f"seq_mnist: error: {error}", file=sys.stderr)
                sys.exit(2)
            raw[name].append(figures)
            print(f"{name:>15} seed {seed}: class-IL {figure(figures['class_il'])}  task-IL "
                  f"{figure(figures['task_il'])}  ({figures['seconds']:.1f} s)", flush=True)
            if args.output:
                args.output.write_text(json.dumps(raw, indent=2))

    print(f"\nSeq-MNIST, {len(args.seeds)} seeds (mean ± std)")
    print(f"{'method':>15} | {'class-IL':>14} | {'published':>9} | {'task-IL':>14} | {'published':>9} | "
          f"{'time/run (s)':>14}")
    for name, runs in raw.items():
        run = RUNS[name]
        print(
            f"{name:>15} | {mean_std([r['class_il'] for r in runs])} | {published(run.published_class_il)} | "
            f"{mean_std([r['task_il'] for r in runs])} | {published(run.published_task_il)} | "
            f"{mean_std([r['seconds'] for r in runs])}"
        )


if __name__ == "__main__":
    main()
