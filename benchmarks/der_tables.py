"""What the benchmarks that reproduce Table 2 of Buzzega et al., "Dark Experience for General
Continual Learning" (NeurIPS 2020), share: a protocol (dataset, tasks, epochs, batch size), its
runs (a method with the paper's best hyperparameters, and the published class-IL and task-IL
accuracy), one run per method and seed, and the table printed next to the published figures.

`seq_mnist.py` and `seq_cifar10.py` each define a `Protocol` and call `main(protocol)`.
`--dataset`, `--epochs` and `--train_samples` run the same recipes on other data or shorter (to
check a script end to end in seconds), and `--blurry` on tasks whose boundaries are blurred (see
the settings' `--blurry`); the figures are then not the protocol's, and the table says so.
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
from sylvan.methods import Method
from sylvan.settings import SETTINGS, ClassIncrementalSetting
from sylvan.settings.online import DEFAULT_DATA_DIR


@dataclass(frozen=True)
class Run:
    """One row of the table: the method with its hyperparameters, the setting it runs on, and the
    published class-IL / task-IL accuracy (None where the paper has no figure)."""

    method: Callable[[], Method]
    published_class_il: float | None
    published_task_il: float | None
    setting: str = "class_incremental"
    batch_size: int | None = None  # None: the protocol's


@dataclass(frozen=True)
class Protocol:
    """A benchmark: the data, the stream, and its rows."""

    title: str
    dataset: str
    nb_tasks: int
    epochs: int
    batch_size: int
    runs: dict[str, Run]
    default_runs: tuple[str, ...]


# options that change the protocol: None keeps the protocol's
CHANGES = ("dataset", "epochs", "train_samples", "blurry")


def run_one(
    protocol: Protocol, name: str, seed: int, data_dir: str, **changes: str | int | float | None
) -> dict[str, float | None]:
    """Class-IL and task-IL accuracy (%) and wall time (s) of run `name` with `seed`, under the
    protocol with `changes` (see `CHANGES`)."""
    run = protocol.runs[name]
    options = dict(
        dataset=protocol.dataset, nb_tasks=protocol.nb_tasks, epochs=protocol.epochs,
        batch_size=run.batch_size or protocol.batch_size, seed=seed, data_dir=data_dir, progress_bar=False,
    )
    options.update({option: value for option, value in changes.items() if value is not None})
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
            accuracies = judge.evaluate(method, judge.prepare_tasks()).accuracies
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


def main(protocol: Protocol, description: str, argv: list[str] | None = None) -> None:
    """The command line of a protocol's benchmark: runs, prints each run as it ends, then the table."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=sorted(protocol.runs), default=list(protocol.default_runs))
    parser.add_argument("--output", type=Path, help="also write the raw figures to this JSON file")
    parser.add_argument("--dataset", help=f"run the recipes on another dataset (not the protocol: {protocol.dataset})")
    parser.add_argument("--epochs", type=int, help=f"epochs per task (not the protocol: {protocol.epochs})")
    parser.add_argument("--train_samples", type=int, help="keep this many training samples (not the protocol)")
    parser.add_argument("--blurry", type=float, help="blur the task boundaries: this fraction of each class's "
                        "samples moves to other tasks (not the protocol: 0)")
    args = parser.parse_args(argv)
    changes = {flag: getattr(args, flag) for flag in CHANGES}
    changed = [flag for flag, value in changes.items() if value is not None]

    raw: dict[str, list[dict[str, float | None]]] = {}
    for name in args.only:
        raw[name] = []
        for seed in args.seeds:
            try:
                figures = run_one(protocol, name, seed, args.data_dir, **changes)
            except SylvanError as error:
                print(f"{Path(sys.argv[0]).stem}: error: {error}", file=sys.stderr)
                sys.exit(2)
            raw[name].append(figures)
            print(f"{name:>15} seed {seed}: class-IL {figure(figures['class_il'])}  task-IL "
                  f"{figure(figures['task_il'])}  ({figures['seconds']:.1f} s)", flush=True)
            if args.output:
                args.output.write_text(json.dumps(raw, indent=2))

    print(f"\n{protocol.title}, {len(args.seeds)} seeds (mean ± std)")
    if changed:
        print(f"NOT the protocol ({', '.join('--' + flag for flag in changed)} given): the figures are not comparable "
              "with the published ones")
    print(f"{'method':>15} | {'class-IL':>14} | {'published':>9} | {'task-IL':>14} | {'published':>9} | "
          f"{'time/run (s)':>14}")
    for name, runs in raw.items():
        run = protocol.runs[name]
        print(
            f"{name:>15} | {mean_std([r['class_il'] for r in runs])} | {published(run.published_class_il)} | "
            f"{mean_std([r['task_il'] for r in runs])} | {published(run.published_task_il)} | "
            f"{mean_std([r['seconds'] for r in runs])}"
        )
