"""What the benchmarks that reproduce Table 2 of Buzzega et al., "Dark Experience for General
Continual Learning" (NeurIPS 2020), share: a protocol (dataset, setting, tasks, epochs, batch
size), its runs (a method with the paper's best hyperparameters, and the published accuracy:
class-IL and task-IL, or domain-IL), one run per method and seed, and the table printed next to
the published figures.

`seq_mnist.py`, `seq_cifar10.py`, `perm_mnist.py` and `rot_mnist.py` each define a `Protocol` and
call `main(protocol)`.
`--dataset`, `--epochs` and `--train_samples` run the same recipes on other data or shorter (to
check a script end to end in seconds), and `--blurry` on tasks whose boundaries are blurred (see
the settings' `--blurry`); the figures are then not the protocol's, and the table says so.

A mean over a few seeds is a noisy estimate of what a recipe gives: on Seq-MNIST, experience
replay with 200 samples varies by about 1.8 points from seed to seed, so the mean of 3 seeds
varies by about 1. Under the protocol, with two seeds or more, a second table therefore tests
each row that has a published figure for equivalence with it: two one-sided t-tests (TOST) that
the mean of the runs' population lies within `--margin` points (2 by default) of the published
figure, with the 90% confidence interval of the difference. A row is `within` where both tests
reject at 5% (the interval lies inside the margin), `outside` where the interval lies entirely
beyond it, and `undecided` otherwise: more seeds are needed to tell.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from scipy import stats

from sylvan.errors import SylvanError
from sylvan.methods import Method
from sylvan.settings import SETTINGS, ClassIncrementalSetting
from sylvan.settings.online import DEFAULT_DATA_DIR


@dataclass(frozen=True)
class Run:
    """One row of the table: the method with its hyperparameters, the setting it runs on, and the
    published accuracy in the protocol's scenario (class-IL or domain-IL) and task-IL (None
    where the paper has no figure)."""

    method: Callable[[], Method]
    published_accuracy: float | None
    published_task_il: float | None
    setting: str | None = None  # None: the protocol's
    batch_size: int | None = None  # None: the protocol's


@dataclass(frozen=True)
class Protocol:
    """A benchmark: the data, the stream, and its rows. `scenario` names the accuracy the table
    reports first: "class-IL" (then task-IL beside it) or "domain-IL" (every task holds every
    class, so there is no task-IL column)."""

    title: str
    dataset: str
    nb_tasks: int
    epochs: int
    batch_size: int
    runs: dict[str, Run]
    default_runs: tuple[str, ...]
    setting: str = "class_incremental"
    setting_options: dict[str, Any] = field(default_factory=dict)  # e.g. domain_shift
    scenario: str = "class-IL"

    @property
    def key(self) -> str:
        """The scenario's accuracy as a key of the raw figures: class_il or domain_il."""
        return self.scenario.lower().replace("-", "_")

    @property
    def task_il(self) -> bool:
        return self.scenario == "class-IL"


def with_batch_gated_gss(runs: dict[str, Run]) -> dict[str, Run]:
    """`runs` and, for each GSS row "gss-N", a row "gss-gated-N": the same recipe with the buffer
    admitting each batch as the paper's code does (`--gss_batch_gate`), next to the same
    published figure, since that code produced it."""
    def gated(method: Callable[[], Method]) -> Callable[[], Method]:
        def gated_method() -> Method:
            plain = method()
            return replace(plain, buffer_options=replace(plain.buffer_options, gss_batch_gate=True))

        return gated_method

    extra = {key.replace("gss-", "gss-gated-", 1): replace(run, method=gated(run.method))
             for key, run in runs.items() if key.startswith("gss-")}
    return {**runs, **extra}


# options that change the protocol: None keeps the protocol's
CHANGES = ("dataset", "epochs", "train_samples", "blurry")


def run_one(
    protocol: Protocol, name: str, seed: int, data_dir: str, **changes: str | int | float | None
) -> dict[str, float | None]:
    """The protocol's accuracy (class-IL or domain-IL, %), task-IL accuracy (%, None on a
    domain-IL protocol) and wall time (s) of run `name` with `seed`, under the protocol with
    `changes` (see `CHANGES`); for a method with a rehearsal buffer, how many stored samples
    new ones replaced over the stream (`buffer_replaced`: a memory that stops taking samples once
    full, as GSS can, shows as 0)."""
    run = protocol.runs[name]
    setting_name = run.setting or protocol.setting
    options = dict(
        dataset=protocol.dataset, nb_tasks=protocol.nb_tasks, epochs=protocol.epochs,
        batch_size=run.batch_size or protocol.batch_size, seed=seed, data_dir=data_dir, progress_bar=False,
    )
    if setting_name == protocol.setting:
        options.update(protocol.setting_options)
    options.update({option: value for option, value in changes.items() if value is not None})
    setting = SETTINGS[setting_name](**options)
    method = run.method()
    start = time.perf_counter()
    results = setting.apply(method)
    seconds = time.perf_counter() - start
    accuracy = task_il = None
    if setting.task_labels_at_test:  # its own accuracy is task-aware; evaluate class-IL apart
        task_il = results.final_average_accuracy
        if setting_name == "multi_task":
            judge = ClassIncrementalSetting(**options)
            accuracies = judge.evaluate(method, judge.prepare_tasks()).accuracies
            accuracy = statistics.mean(accuracies)
    else:
        accuracy, task_il = results.final_average_accuracy, results.task_aware_accuracy
    if not protocol.task_il:
        task_il = None
    figures = {
        protocol.key: None if accuracy is None else 100 * accuracy,
        "task_il": None if task_il is None else 100 * task_il,
        "seconds": seconds,
    }
    buffer = getattr(method, "buffer", None)
    if buffer is not None and hasattr(buffer, "replaced"):
        figures["buffer_replaced"] = buffer.replaced
    return figures


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


class Equivalence(NamedTuple):
    """How the runs' mean compares with a published figure (see `equivalence`)."""

    difference: float  # mean - published
    low: float  # the 90% confidence interval of the difference
    high: float
    p: float  # the TOST p-value: the larger of the two one-sided tests'
    verdict: str  # "within", "outside" or "undecided" the margin


def equivalence(values: list[float], published: float, margin: float) -> Equivalence:
    """Two one-sided t-tests (Schuirmann's TOST) of whether the mean of the population that
    `values` (one per seed, at least two) are drawn from lies within `margin` of `published`,
    taken as exact. At the 5% level the mean is `within` when the 90% confidence interval of the
    difference lies inside (-margin, margin), and `outside` when it lies entirely beyond one end."""
    n = len(values)
    if n < 2:
        raise ValueError("an equivalence test needs at least two runs")
    difference = statistics.mean(values) - published
    error = statistics.stdev(values) / math.sqrt(n)
    half_width = stats.t.ppf(0.95, n - 1) * error
    low, high = difference - half_width, difference + half_width
    if error == 0:  # every seed gave the same figure: the difference is known exactly
        p = 0.0 if abs(difference) < margin else 1.0
    else:
        p = max(stats.t.sf((difference + margin) / error, n - 1), stats.t.cdf((difference - margin) / error, n - 1))
    if -margin < low and high < margin:
        verdict = "within"
    elif low > margin or high < -margin:
        verdict = "outside"
    else:
        verdict = "undecided"
    return Equivalence(difference, low, high, float(p), verdict)


def equivalence_table(protocol: Protocol, raw: dict[str, list[dict[str, float | None]]], margin: float) -> list[str]:
    """The lines of the table that tests each row with a published figure for equivalence with
    it (see `equivalence`); none where fewer than two seeds ran or no row has a published figure."""
    rows = [(name, values) for name, runs in raw.items() if protocol.runs[name].published_accuracy is not None
            if len(values := [r[protocol.key] for r in runs if r[protocol.key] is not None]) >= 2]
    if not rows:
        return []
    lines = [
        f"\nAgainst the published {protocol.scenario} figures: is the mean within ±{margin:g} points? (two one-sided "
        "t-tests at 5%, the 90% CI of mean - published)",
        f"{'method':>15} | {'seeds':>5} | {'mean - published':>16} | {'90% CI':>16} | {'TOST p':>7} | verdict",
    ]
    for name, values in rows:
        test = equivalence(values, protocol.runs[name].published_accuracy, margin)
        interval = f"[{test.low:+.2f}, {test.high:+.2f}]"
        lines.append(f"{name:>15} | {len(values):>5} | {test.difference:>+16.2f} | {interval:>16} | {test.p:>7.3f} | "
                     f"{test.verdict}")
    return lines


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
    parser.add_argument("--margin", type=float, default=2.0,
                        help="the points within which a row's mean should lie of its published figure (default 2)")
    args = parser.parse_args(argv)
    if not args.margin > 0:
        parser.error(f"--margin must be positive, got {args.margin}")
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
            task_il = f"  task-IL {figure(figures['task_il'])}" if protocol.task_il else ""
            replaced = figures.get("buffer_replaced")
            replaced = "" if replaced is None else f", {replaced:,} stored samples replaced"
            print(f"{name:>15} seed {seed}: {protocol.scenario} {figure(figures[protocol.key])}{task_il}  "
                  f"({figures['seconds']:.1f} s{replaced})", flush=True)
            if args.output:
                args.output.write_text(json.dumps(raw, indent=2))

    print(f"\n{protocol.title}, {len(args.seeds)} seeds (mean ± std)")
    if changed:
        print(f"NOT the protocol ({', '.join('--' + flag for flag in changed)} given): the figures are not comparable "
              "with the published ones")
    task_il = f" {'task-IL':>14} | {'published':>9} |" if protocol.task_il else ""
    print(f"{'method':>15} | {protocol.scenario:>14} | {'published':>9} |{task_il} {'time/run (s)':>14}")
    for name, runs in raw.items():
        run = protocol.runs[name]
        task_il = (f" {mean_std([r['task_il'] for r in runs])} | {published(run.published_task_il)} |"
                   if protocol.task_il else "")
        print(
            f"{name:>15} | {mean_std([r[protocol.key] for r in runs])} | {published(run.published_accuracy)} |"
            f"{task_il} {mean_std([r['seconds'] for r in runs])}"
        )
    if not changed:  # other data or a shorter run is not what the published figures measured
        for line in equivalence_table(protocol, raw, args.margin):
            print(line)
