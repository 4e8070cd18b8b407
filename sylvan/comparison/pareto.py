"""The accuracy-cost trade-off of summarized runs: `sylvan --summarize DIR --pareto FILE.png`.

Each configuration (the runs `--summarize` groups: the same setting, method and options over
seeds) is one point: its mean final average accuracy against its mean training FLOPs, and
against the mean bytes its method keeps (`Results.cost`), with the standard deviation over seeds
as error bars. Configurations are compared within a problem: a setting and the options of it
that change the problem (dataset, tasks, epochs, ...; `sylvan.comparison.summary.problem_of`). A
configuration is Pareto-optimal where no other configuration of its problem is at least as
accurate and at most as costly with one of the two strictly better. The PNG has a row of panels
per problem, one for compute and one for memory, the optimal configurations marked and joined;
a CSV beside it (the same name, `.csv`) holds the figures and which configurations are optimal.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sylvan.errors import ConfigurationError

COSTS = (("training_flops", "training FLOPs"), ("memory_bytes", "memory kept (bytes)"))


@dataclass
class Point:
    """One configuration: the problem it solved (its setting and the options that make the
    problem), its label, and the mean and standard deviation over its seeds of its accuracy and costs."""

    problem: str
    label: str
    seeds: int
    accuracy: tuple[float, float]
    costs: dict[str, tuple[float, float]]


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, spread


def points_of(groups: Sequence[Any], describe: Any, problem: Any) -> list[Point]:
    """The points of the summary's `groups` whose runs recorded their cost and an accuracy
    (`describe(group)`: the options that tell the group apart; `problem(group)`: the problem its
    runs solved)."""
    points = []
    for group in groups:
        accuracies = group.values("final_average_accuracy")
        costs = {key: group.costs(key) for key, _ in COSTS}
        if not accuracies or any(len(values) != len(accuracies) for values in costs.values()):
            continue
        label = group.first.method + (f" {describe(group)}" if describe(group) else "")
        points.append(Point(problem(group), label, len(accuracies), mean_and_std(accuracies),
                            {key: mean_and_std(values) for key, values in costs.items()}))
    return points


def pareto_optimal(points: Sequence[Point], cost: str) -> list[bool]:
    """Whether each point is Pareto-optimal among the points of its problem: no other is at
    least as accurate at no more `cost`, and better in one of the two."""
    optimal = []
    for point in points:
        accuracy, spent = point.accuracy[0], point.costs[cost][0]
        dominated = any(
            other is not point and other.problem == point.problem
            and other.accuracy[0] >= accuracy and other.costs[cost][0] <= spent
            and (other.accuracy[0] > accuracy or other.costs[cost][0] < spent)
            for other in points
        )
        optimal.append(not dominated)
    return optimal


def write_pareto(points: Sequence[Point], png_path: str | Path) -> tuple[Path, Path]:
    """Draw the trade-off of `points` to `png_path` and write its CSV beside it."""
    png = Path(png_path).expanduser()
    if png.suffix.lower() != ".png":
        raise ConfigurationError(f"--pareto {png_path}: give a .png file (the CSV is written beside it)")
    if not points:
        raise ConfigurationError(
            "--pareto: none of the summarized runs recorded its cost (runs of the supervised settings do)"
        )
    optimal = {cost: pareto_optimal(points, cost) for cost, _ in COSTS}
    rows = [["problem", "configuration", "seeds", "accuracy", "accuracy std", *(
        name for cost, _ in COSTS for name in (cost, f"{cost} std", f"pareto optimal in {cost}"))]]
    for index, point in enumerate(points):
        rows.append([point.problem, point.label, point.seeds, *point.accuracy, *(
            value for cost, _ in COSTS for value in (*point.costs[cost], optimal[cost][index]))])
    csv_path = png.with_suffix(".csv")
    try:
        png.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        _draw(points, optimal, png)
    except OSError as error:
        raise ConfigurationError(f"--pareto {png_path}: {error.strerror}") from error
    return png, csv_path


def _draw(points: Sequence[Point], optimal: dict[str, list[bool]], path: Path) -> None:
    figure(points, optimal).savefig(path, dpi=120)


def figure(points: Sequence[Point], optimal: dict[str, list[bool]]) -> Any:
    """The trade-off's matplotlib figure: a row of panels per problem, a column per cost. A cost
    axis is logarithmic where its values span a decade or more, else linear (a log axis within
    one decade would show no labelled tick). A figure of its own on the Agg canvas, not through
    pyplot (as the run's plots: `sylvan.analysis.plots`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    problems = sorted({point.problem for point in points})
    fig = Figure(figsize=(6 * len(COSTS), 4.5 * len(problems)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(problems), len(COSTS), squeeze=False)
    for row, problem in enumerate(problems):
        for column, (cost, title) in enumerate(COSTS):
            ax = axes[row][column]
            chosen = [(p, best) for p, best in zip(points, optimal[cost]) if p.problem == problem]
            for point, best in chosen:
                x, x_err = point.costs[cost]
                y, y_err = 100 * point.accuracy[0], 100 * point.accuracy[1]
                ax.errorbar(x, y, xerr=x_err, yerr=y_err, fmt="o" if best else "s", capsize=3,
                            color="tab:red" if best else "tab:gray", markersize=7 if best else 5)
                ax.annotate(point.label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
            front = sorted((p.costs[cost][0], 100 * p.accuracy[0]) for p, best in chosen if best)
            if len(front) > 1:
                ax.step([x for x, _ in front], [y for _, y in front], where="post", color="tab:red", alpha=0.5)
            spent = [p.costs[cost][0] for p, _ in chosen]
            if min(spent) > 0 and max(spent) >= 10 * min(spent):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap
            ax.set_xlabel(title)
            ax.set_ylabel("final average accuracy (%)")
            ax.set_title(f"{problem}: accuracy against {title.split(' (')[0]}", fontsize=10)
            ax.grid(True, alpha=0.3)
    fig.suptitle("Pareto-optimal configurations in red (mean ± std over seeds)")
    fig.tight_layout()
    return fig


def log_pareto(png: Path, csv_path: Path, project: str, entity: str | None = None, group: str | None = None) -> str:
    """Log the trade-off drawn to `png` (with its CSV, `write_pareto`) to Weights & Biases, as a
    run of its own in `project`: the CSV as the table `pareto/table`, the PNG as the image
    `pareto/plot`. Offline where there are no credentials (`sylvan.run.tracking.start_wandb`).
    Returns where the run went: its URL, or its offline folder."""
    import wandb

    from sylvan.run.tracking import start_wandb

    with open(csv_path, newline="") as f:
        header, *rows = list(csv.reader(f))
    run = start_wandb(project, entity, "pareto", {"pareto_csv": str(csv_path)}, png.parent, group=group)
    try:
        run.log({"pareto/table": wandb.Table(columns=header, data=rows), "pareto/plot": wandb.Image(str(png))})
        return run.url or str(Path(run.dir).parent)
    finally:
        run.finish()
