"""Mean ± std over seeds of the runs under results folders: `sylvan --summarize DIR [DIR ...]`.

A result worth reporting is a configuration's figure over several seeds. Every run folder holds
`config.yaml` (all its options) and `results.json`; runs whose configurations differ only in
the seed (or in options that cannot change a figure: where data and outputs go, the progress
bar) form a group. The table gives each group's mean ± sample standard deviation of the summary
metrics, of what the runs cost (training and inference FLOPs, memory) and of the wall time, next
to the options that tell the groups apart. Runs that did not
finish are left out of the figures and listed below the table, and so are repeats: a group
counts each seed once (its latest finished run), since a run repeated with the same seed is not
a new sample (on a CPU it gives the same figures) and would shrink the standard deviation.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from sylvan.errors import ConfigurationError
from sylvan.methods import METHODS
from sylvan.run.checkpoints import RESUME_NEUTRAL_OPTIONS
from sylvan.run.tracking import PROVENANCE_FILE
from sylvan.settings import SETTINGS

# options that change no figure of a run, so runs that differ only in them belong together
NEUTRAL_OPTIONS = frozenset({"seed", "data_dir", "image_cache", "progress_bar"})
# setting options that leave the problem as it is, however they change a run's figures slightly
PROBLEM_NEUTRAL_OPTIONS = NEUTRAL_OPTIONS | RESUME_NEUTRAL_OPTIONS
# summary metrics, by their name for accuracies; `measure` replaces "accuracy" for returns
METRICS = (
    "final_average_accuracy", "average_incremental_accuracy", "forgetting", "backward_transfer",
    "forward_transfer", "task_aware_accuracy", "online_accuracy",
    # Continual World's, of an RL run's success curve (`sylvan.analysis.continual_world`)
    "cw_performance", "cw_forgetting", "cw_forward_transfer",
)
# what a run cost (`Results.cost`): the column, the key and the scale of its figure
COSTS = (
    ("training (GFLOP)", "training_flops", 1e-9),
    ("inference (MFLOP/sample)", "inference_flops_per_sample", 1e-6),
    ("memory (MiB)", "memory_bytes", 2.0**-20),
)


@dataclass
class Run:
    """One run folder: its configuration and its results."""

    folder: Path
    setting: str
    method: str
    options: dict[str, Any]  # setting and method options, by name
    results: dict[str, Any]
    wall_time: float | None
    finished_at: float = 0.0  # when results.json was last written (seconds since the epoch)
    setting_option_names: frozenset[str] = frozenset()  # which of `options` are the setting's

    @property
    def seed(self) -> Any:
        return self.options.get("seed")

    @property
    def key(self) -> tuple[Any, ...]:
        kept = sorted((k, repr(v)) for k, v in self.options.items() if k not in NEUTRAL_OPTIONS)
        return (self.setting, self.method, *kept)

    def problem_options(self) -> dict[str, Any]:
        """The setting options that make the problem the run solved (its dataset, tasks,
        epochs, ...): all but those that change no figure of it."""
        return {name: self.options[name] for name in sorted(self.setting_option_names)
                if name not in PROBLEM_NEUTRAL_OPTIONS}


@dataclass
class Group:
    """The finished runs of one configuration: one per seed, and the runs left out as repeats
    of a seed (each with the run kept in its place)."""

    runs: list[Run] = field(default_factory=list)
    repeats: list[tuple[Run, Run]] = field(default_factory=list)
    # runs left out for lacking figures another run of their seed has: (run, the run kept, the figures)
    lacking: list[tuple[Run, Run, list[str]]] = field(default_factory=list)

    @property
    def first(self) -> Run:
        return self.runs[0]

    def values(self, metric: str) -> list[float]:
        values = [run.results.get(metric) for run in self.runs]
        return [float(v) for v in values if v is not None]

    def costs(self, key: str) -> list[float]:
        """The runs' `cost[key]` (`Results.cost`), where they recorded it."""
        values = [(run.results.get("cost") or {}).get(key) for run in self.runs]
        return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


RUN_MARKERS = ("results.json", PROVENANCE_FILE)  # beside config.yaml, what makes a folder a run's


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders (holding `config.yaml` and `results.json`, or, for a run stopped before its
    first task ended, `provenance.json`) at or under `paths`."""
    folders: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if not path.is_dir():
            raise ConfigurationError(f"--summarize {given}: no such folder")
        found = sorted(p.parent for p in path.rglob("config.yaml")
                       if any((p.parent / marker).is_file() for marker in RUN_MARKERS))
        if not found:
            raise ConfigurationError(
                f"--summarize {given}: no run folder (one with config.yaml and results.json) in it or below"
            )
        folders.extend(folder for folder in found if folder not in folders)
    return folders


class UnreadableRun(ConfigurationError):
    """A run folder whose `config.yaml` or `results.json` cannot be read; `reason` says why."""

    def __init__(self, folder: Path, error: Exception) -> None:
        self.reason = f"cannot read the run in {folder}: {error}"
        super().__init__(f"--summarize: {self.reason}")


def load_run(folder: Path) -> Run:
    """The run in `folder`; one stopped before its first task ended (no results.json yet) as
    unfinished (`Run.started_only`)."""
    try:
        config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
        results_file = folder / "results.json"
        results = json.loads(results_file.read_text()) if results_file.exists() else {"complete": False,
                                                                                      "started_only": True}
    except (OSError, yaml.YAMLError, json.JSONDecodeError) as error:
        raise UnreadableRun(folder, error) from error
    problem = layout_problem(config, results)
    if problem:
        raise UnreadableRun(folder, ValueError(problem))
    runtime_file = folder / "runtime.json"
    wall_time = None
    if runtime_file.is_file():
        try:
            wall_time = json.loads(runtime_file.read_text()).get("total_wall_time")
        except json.JSONDecodeError:
            pass  # written atomically by sylvan; a damaged one only loses the timing
    setting, method = str(config.get("setting")), str(config.get("method"))
    setting_options = with_defaults(SETTINGS.get(setting), config.get("setting_options") or {})
    options = {**setting_options, **with_defaults(METHODS.get(method), config.get("method_options") or {})}
    finished_at = results_file.stat().st_mtime if results_file.exists() else 0.0
    return Run(folder, setting, method, options, results, wall_time, finished_at, frozenset(setting_options))


def layout_problem(config: Any, results: Any) -> str | None:
    """What keeps a run's parsed `config.yaml` and `results.json` from being summarized (another
    file under those names, or one edited by hand), or None: the summary reads the options as
    mappings and the metrics as numbers."""
    if not isinstance(config, dict):
        return f"config.yaml holds {type(config).__name__}, not a mapping of options"
    for key in ("setting", "method"):
        if not isinstance(config.get(key), str):
            return f"config.yaml's {key} is {config.get(key)!r}, not a name"
    for section in ("setting_options", "method_options"):
        if not isinstance(config.get(section) or {}, dict):
            return f"config.yaml's {section} is {config[section]!r}, not a mapping of options"
    if not isinstance(results, dict):
        return f"results.json holds {type(results).__name__}, not an object of metrics"
    measure = results.get("measure", "accuracy")
    if not isinstance(measure, str):
        return f"results.json's measure is {measure!r}, not a name"
    cost = results.get("cost") or {}
    if not isinstance(cost, dict):
        return f"results.json's cost is {cost!r}, not an object of figures"
    figures = [(metric, results.get(metric)) for metric in (name.replace("accuracy", measure) for name in METRICS)]
    figures += [(f"cost {key}", cost.get(key)) for _, key, _ in COSTS]
    for name, value in figures:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"results.json's {name} is {value!r}, not a number"
        if value is not None and not math.isfinite(value):  # Python's json reads NaN and Infinity
            return f"results.json's {name} is {json.dumps(value)}, not a finite number"
    return None


def with_defaults(cls: type | None, recorded: dict[str, Any]) -> dict[str, Any]:
    """`recorded` options plus, at their defaults, those of `cls` that the run did not record.

    A run made before an option existed did what the option's default does (an option is added
    with the default that keeps the earlier behaviour), so it belongs with the newer runs that
    left the option at its default. Values are taken through YAML as config.yaml stores them, so
    that a default compares equal to the same value read back from a file. Without a registered
    class (a plugin's, not imported here) the recorded options are all there is."""
    if cls is None or not is_dataclass(cls):
        return dict(recorded)
    options = dict(recorded)
    for option in fields(cls):
        if option.name in options:
            continue
        if option.default is not MISSING:
            default = option.default
        elif option.default_factory is not MISSING:
            default = option.default_factory()
        else:
            continue
        try:
            options[option.name] = yaml.safe_load(yaml.safe_dump(default))
        except yaml.YAMLError:
            continue  # a default config.yaml could not have held; nothing to compare it with
    return options


def group_runs(runs: Sequence[Run]) -> tuple[list[Group], list[Run]]:
    """(groups of finished runs that share a configuration, in a stable order, each keeping the
    latest finished run of each seed; unfinished runs)."""
    groups: dict[tuple[Any, ...], Group] = {}
    unfinished = []
    for run in runs:
        if not run.results.get("complete", True):
            unfinished.append(run)
            continue
        groups.setdefault(run.key, Group()).runs.append(run)
    for group in groups.values():
        group.lacking = lacking_figures(group.runs)
        left_out = {id(run) for run, _, _ in group.lacking}
        latest: dict[str, Run] = {}
        earlier: list[Run] = []
        kept = [run for run in group.runs if id(run) not in left_out]
        for run in sorted(kept, key=lambda run: (run.finished_at, str(run.folder))):
            if repr(run.seed) in latest:
                earlier.append(latest[repr(run.seed)])
            latest[repr(run.seed)] = run
        group.repeats = [(run, latest[repr(run.seed)]) for run in earlier]
        group.runs = sorted(latest.values(), key=lambda run: (str(run.seed), str(run.folder)))
    return [groups[key] for key in sorted(groups, key=repr)], unfinished


def figures_of(run: Run) -> set[str]:
    """The summary metrics `run` recorded (not null)."""
    measure = run.results.get("measure", "accuracy")
    return {name for name in (metric.replace("accuracy", measure) for metric in METRICS)
            if run.results.get(name) is not None}


def lacking_figures(runs: Sequence[Run]) -> list[tuple[Run, Run, list[str]]]:
    """The runs of `runs` (one configuration) that lack a figure another run of their seed has
    (a run marked complete without what its setting computes after the stream, by an older
    version), each with the latest run of its seed that has every figure and what it lacks: a
    later run of a seed replaces an earlier one only where it measured as much."""
    by_seed: dict[str, list[Run]] = {}
    for run in runs:
        by_seed.setdefault(repr(run.seed), []).append(run)
    lacking = []
    for same_seed in by_seed.values():
        every = set().union(*(figures_of(run) for run in same_seed))
        whole = sorted((run for run in same_seed if figures_of(run) == every),
                       key=lambda run: (run.finished_at, str(run.folder)))
        if not whole:
            continue
        lacking += [(run, whole[-1], sorted(every - figures_of(run))) for run in same_seed if figures_of(run) != every]
    return lacking


def distinguishing_options(groups: Sequence[Group]) -> list[str]:
    """Names of the options whose values differ between groups of the same setting and method
    (or that only some of them have), and of the setting options whose values differ between
    groups of the same setting, whatever their methods (`problem_options`: two methods run on
    two datasets are not two configurations of one problem): what tells the rows apart."""
    return sorted(set(_differing(groups, lambda run: (run.setting, run.method), lambda run: run.options))
                  | set(problem_distinguishing_options(groups)))


def problem_distinguishing_options(groups: Sequence[Group]) -> list[str]:
    """The problem options (`Run.problem_options`) whose values differ between groups of the same setting."""
    return _differing(groups, lambda run: run.setting, lambda run: run.problem_options())


def problem_of(group: Group, distinguishing: Sequence[str]) -> str:
    """The problem a group's runs solved: its setting, and its values of the `distinguishing`
    problem options (`problem_distinguishing_options`)."""
    problem = group.first.problem_options()
    return " ".join([group.first.setting, *(f"{name}={problem[name]}" for name in distinguishing if name in problem)])


def _differing(groups: Sequence[Group], together: Any, options: Any) -> list[str]:
    """The names among `options(run)` whose values differ between the groups whose first runs
    share `together(run)` (or that only some of them have), the neutral options left out."""
    names: set[str] = set()
    by_key: dict[Any, list[dict[str, Any]]] = {}
    for group in groups:
        by_key.setdefault(together(group.first), []).append(options(group.first))
    for values in by_key.values():
        every = set().union(*values) - NEUTRAL_OPTIONS
        names.update(name for name in every if len({repr(v.get(name, "<absent>")) for v in values}) > 1)
    return sorted(names)


def mean_std(values: list[float], scale: float) -> str:
    """Mean ± sample standard deviation of `values` times `scale` ("-" for none; the mean alone
    for one value)."""
    mean, spread = mean_and_std(values)
    if mean is None:
        return "-"
    if spread is None:
        return f"{scale * mean:.2f}"
    return f"{scale * mean:.2f} ± {scale * spread:.2f}"


def summary_columns(groups: Sequence[Group]) -> tuple[list[str], list[list[str]], list[list[list[float]]]]:
    """The table's columns: the names of its descriptive columns (setting, method, options,
    seeds) with each group's cells, and the names of its figures (metrics, costs, wall time)
    with each group's values, scaled as shown (accuracies in percent, FLOPs in G and M, MiB)."""
    options = distinguishing_options(groups)
    metrics = []
    for metric in METRICS:
        for group in groups:
            measure = group.first.results.get("measure", "accuracy")
            name = metric.replace("accuracy", measure)
            if name not in metrics and group.values(name):
                metrics.append(name)
    costs = [(column, key, scale) for column, key, scale in COSTS if any(group.costs(key) for group in groups)]
    figures = [*metrics, *(column for column, _, _ in costs), "wall time (s)"]
    described, values = [], []
    for group in groups:
        first = group.first
        scale = 100.0 if first.results.get("measure", "accuracy") == "accuracy" else 1.0
        chosen = " ".join(f"{name}={first.options[name]}" for name in options if name in first.options)
        seeds = " ".join(str(run.seed) for run in group.runs)
        times = [run.wall_time for run in group.runs if run.wall_time is not None]
        described.append([first.setting, first.method, chosen or "-", seeds])
        values.append([*([scale * v for v in group.values(metric)] for metric in metrics),
                       *([cost_scale * v for v in group.costs(key)] for _, key, cost_scale in costs), times])
    return figures, described, values


DESCRIBED = ["setting", "method", "options", "seeds"]


def summary_rows(groups: Sequence[Group]) -> tuple[list[str], list[list[str]]]:
    """The table as (header, rows of cells): one row per group, each figure as mean ± std."""
    figures, described, values = summary_columns(groups)
    return [*DESCRIBED, *figures], [[*cells, *(mean_std(v, 1.0) for v in row)] for cells, row in zip(described, values)]


def mean_and_std(values: list[float]) -> tuple[float | None, float | None]:
    """The mean and sample standard deviation of `values` (None where there are too few)."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None
    return mean, math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))


def write_summary_csv(path: Path, groups: Sequence[Group]) -> None:
    """The table as CSV for a spreadsheet or pandas: a row per group, each figure as two numeric
    columns, "NAME mean" and "NAME std" (empty where there is no value), lines ending in LF."""
    figures, described, values = summary_columns(groups)
    header = [*DESCRIBED, *(f"{figure} {part}" for figure in figures for part in ("mean", "std"))]
    rows = []
    for cells, row in zip(described, values):
        numbers = [number for v in row for number in mean_and_std(v)]
        rows.append([*cells, *("" if number is None else repr(number) for number in numbers)])
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows])


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in [header, *rows]]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def summarize(paths: Sequence[str | Path], csv_path: str | Path | None = None,
              pareto_path: str | Path | None = None, wandb: dict[str, str | None] | None = None) -> str:
    """The summary table of the runs under `paths` (accuracies in percent, returns as they are),
    with a line per run left out (unfinished, a repeated seed, or unreadable: one damaged folder
    does not hide a sweep's other runs); with `csv_path`, the table is also written as CSV; with
    `pareto_path` (a .png), the accuracy-cost trade-off is drawn there (`sylvan.comparison.pareto`), and
    with `wandb` (project, entity, group) logged to Weights & Biases as a table and an image."""
    runs: list[Run] = []
    unreadable: list[UnreadableRun] = []
    for folder in find_runs(paths):
        try:
            runs.append(load_run(folder))
        except UnreadableRun as error:
            unreadable.append(error)
    if not runs:
        raise unreadable[0]
    groups, unfinished = group_runs(runs)
    lines = []
    if groups:
        header, rows = summary_rows(groups)
        lines.append(format_table(header, rows))
        if csv_path is not None:
            try:
                write_summary_csv(Path(csv_path).expanduser(), groups)
            except OSError as error:
                raise ConfigurationError(f"--summary_csv {csv_path}: {error.strerror}") from error
    if pareto_path is not None:
        from sylvan.comparison.pareto import points_of, write_pareto

        problem_options = problem_distinguishing_options(groups)
        options = [name for name in distinguishing_options(groups) if name not in problem_options]

        def describe(group: Group) -> str:
            return " ".join(f"{name}={group.first.options[name]}" for name in options if name in group.first.options)

        png, table = write_pareto(points_of(groups, describe, lambda group: problem_of(group, problem_options)),
                                  pareto_path)
        lines.append(f"the accuracy-cost trade-off: {png} (its figures: {table})")
        if wandb is not None and wandb.get("project"):
            from sylvan.comparison.pareto import log_pareto

            where = log_pareto(png, table, wandb["project"], wandb.get("entity"), wandb.get("group"))
            lines.append(f"the trade-off logged to Weights & Biases: {where}")
    for group in groups:
        for left_out, kept in group.repeats:
            seed = left_out.seed
            lines.append(f"left out, an earlier run of seed {seed} (counted: {kept.folder}): {left_out.folder}")
        for left_out, kept, figures in group.lacking:
            lines.append(f"left out, a run of seed {left_out.seed} without {', '.join(figures)}, which another run "
                         f"of it has (counted: {kept.folder}): {left_out.folder}")
    for run in unfinished:
        how = ("stopped before its first task ended" if run.results.get("started_only")
               else f"sylvan --resume {run.folder} completes it")
        lines.append(f"left out, not finished: {run.folder} ({how})")
    lines.extend(f"left out, {error.reason}" for error in unreadable)
    lines.append(f"{sum(len(group.runs) for group in groups)} finished run(s) in {len(groups)} configuration(s)")
    return "\n".join(lines)
