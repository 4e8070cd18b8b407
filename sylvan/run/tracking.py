"""Where a run's outputs go: a folder per run, written as the run goes, and Weights & Biases.

The folder holds `config.yaml` (the resolved configuration, reloadable with --config_path),
`results.json` (metrics; identical for two runs with the same seed), `runtime.json` (wall
times, memory), the plots that describe the run (`sylvan.analysis.plots.plots_of`: the
accuracy matrix, curve and confusion matrix; a stream's accuracy along it and after a switch),
the loggers' files (`sylvan.run.loggers`: `logs/train.csv`, `logs/stages.csv`,
`logs/summary.csv`; `tensorboard/`), `logs/cost.csv` (what each stage cost: its
training FLOPs, inference FLOPs per sample, and the bytes the method held after it),
`checkpoints/` (the method's state after each task), `provenance.json` (the software, machine and
command of the run's start and of each resumption) and, with W&B, `wandb_run.json` (the W&B run's
id, so that a resumed run logs into the same W&B run). Results are rewritten after every
task, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sylvan.analysis.metrics import Results
from sylvan.errors import ConfigurationError, writing
from sylvan.run.folder_lock import RunFolderLock
from sylvan.run.loggers import CsvLogger, Logger, TensorBoardLogger, WandbLogger, recorded_log, write_rows
from sylvan.run.provenance import provenance_entry

if TYPE_CHECKING:
    from sylvan.run.run_logger import RunLogger


class Tracker:
    """Writes one run's results, plots, logs and checkpoints; mirrors them to W&B if asked."""

    def __init__(
        self,
        results_dir: str | Path,
        run_name: str,
        config: dict[str, Any],
        wandb_project: str | None = None,
        wandb_entity: str | None = None,
        wandb_group: str | None = None,
        loggers: Sequence[str] = ("csv",),
        save_checkpoints: bool = True,
        verbose: bool = True,
        resume_dir: str | Path | None = None,
        folder_lock: RunFolderLock | None = None,
    ) -> None:
        """`loggers`: where the metrics go besides the run's folder (`sylvan.run.loggers`: csv,
        tensorboard, wandb; `wandb_project` alone adds wandb). With `resume_dir`, write into that
        existing run folder (resuming it; see `restore`) and keep its `config.yaml`. The folder is
        locked for this process (`folder_lock`, where the caller took it already), or refused when
        another holds it."""
        if resume_dir is None:
            self.run_dir = unique_run_dir(Path(results_dir).expanduser(), run_name)
        else:
            self.run_dir = Path(resume_dir).expanduser()
        self.config = config
        self.save_checkpoints = save_checkpoints
        self.verbose = verbose
        self.folder_lock = folder_lock if folder_lock is not None else RunFolderLock(self.run_dir)
        self.folder_lock.acquire()  # before anything is written: one process at a time in a run folder
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        if resume_dir is None:
            with open(self.run_dir / "config.yaml", "w") as f:
                yaml.safe_dump(config, f, sort_keys=False)
        # what tells this run's checkpoints from another run's (kept in provenance.json and each checkpoint)
        self.run_id = uuid.uuid4().hex if resume_dir is None else recorded_run_id(self.run_dir)
        record_provenance(self.run_dir, "started" if resume_dir is None else "resumed", self.run_id)
        from sylvan.run.run_logger import RunLogger

        self._logger = RunLogger(self)
        self.last_step = -1  # the last training step logged (by the fits' loggers, or a loop of the method's own)
        # where the metrics go (`sylvan.run.loggers`); `loggers()` is what the engine logs through
        self.destinations: list[Logger] = [CsvLogger(self.run_dir)] if "csv" in loggers else []
        if "tensorboard" in loggers:
            self.destinations.append(TensorBoardLogger(self.run_dir))
        self.wandb_run = None
        if wandb_project:
            self.wandb_run = start_wandb(wandb_project, wandb_entity, run_name, config, self.run_dir,
                                         run_id=recorded_wandb_run_id(self.run_dir) if resume_dir else None,
                                         group=wandb_group)
            write_json(self.run_dir / WANDB_RUN_FILE, {"id": self.wandb_run.id})
            # the W&B run keeps what produced it beside its configuration, each resumption included: a
            # copy in its files, uploaded with them (wandb.save would link it, and warn that it did)
            shutil.copyfile(self.run_dir / PROVENANCE_FILE, Path(self.wandb_run.dir) / PROVENANCE_FILE)
            self.destinations.append(WandbLogger(self.wandb_run))

    @property
    def checkpoint_dir(self) -> Path | None:
        """Where the run's checkpoints go; None with --save_checkpoints false."""
        return self.run_dir / "checkpoints" if self.save_checkpoints else None

    def state(self) -> dict[str, Any]:
        """Where the logs stand (kept in each checkpoint, for resuming): the next step's number
        and what the loggers keep (the CSV log's bytes, their SHA-256 and columns, its stages)."""
        state: dict[str, Any] = {"next_step": max(self._logger.next_step, self.last_step + 1), "run_id": self.run_id}
        for logger in self.destinations:
            state.update(logger.state())
        return state

    def restore(self, state: dict[str, Any], stages: int) -> None:
        """Resuming from a checkpoint written after `stages` stages: cut the logs back to what
        they held then (dropping the steps of the stage that was interrupted, which runs again,
        and anything written after them) and number the next steps after it. A CSV log that no
        longer starts with what the checkpoint recorded is refused (`log_damage`), before
        anything is written."""
        for logger in self.destinations:
            logger.restore(state, state["next_step"], stages)
        self._logger.continue_at(state["next_step"])
        self.last_step = state["next_step"] - 1

    def release_folder(self) -> None:
        """The run is over in this process: another may resume or write its folder."""
        self.folder_lock.release()

    def loggers(self) -> list[RunLogger]:
        """The loggers of the run's training log (one step count across its fits)."""
        return [self._logger]

    def expect_columns(self, names: Sequence[str]) -> None:
        """The training log will have these metrics (an agent's episodes'), before its first row."""
        for logger in self.destinations:
            logger.expect_columns(names)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        """A step of the training log (numbered across the run) to every logger."""
        row = {k: float(v) for k, v in metrics.items() if k != "epoch"}
        self.last_step = max(self.last_step, step)
        for logger in self.destinations:
            logger.log_step(step, row)

    def write_results(self, results: Results) -> None:
        write_json(self.run_dir / "results.json", results.metrics_dict())
        write_json(self.run_dir / "runtime.json", results.runtime_dict())

    def on_stage_end(self, results: Results, stage: int, nb_stages: int, tasks_seen: int) -> None:
        """After each training stage, once its checkpoint is written (`sylvan.run.checkpointer`):
        persist the results, report progress."""
        self.write_results(results)
        if results.has_cost:  # what the stage cost (`sylvan.run.accounting`)
            write_stage_costs(self.run_dir / "logs" / "cost.csv", results)
        row = results.accuracy_matrix[-1]
        measured = [a for a in row if a is not None]  # a setting may leave the tasks to come unevaluated
        measure, scale, unit = results.measure, results.display_scale, results.unit
        if self.verbose and results.stream_accuracy is not None:
            modes = ", ".join(f"{name} {'-' if a is None else f'{scale * a:.2f}{unit}'}"
                              for name, a in zip(results.column_names, row))
            print(f"[sylvan] stage {stage + 1}/{nb_stages} done: predict-then-train {measure} so far "
                  f"{scale * results.online_accuracy:.2f}{unit} ({modes}; {results.task_wall_time[-1]:.1f} s)",
                  flush=True)
        elif self.verbose:
            all_tasks = (f", on all {len(row)} tasks {scale * sum(row) / len(row):.2f}{unit}"
                         if len(measured) == len(row) else "")
            print(
                f"[sylvan] stage {stage + 1}/{nb_stages} done: {measure} on the {tasks_seen} tasks "
                f"seen {scale * sum(row[:tasks_seen]) / tasks_seen:.2f}{unit}{all_tasks} "
                f"({results.task_wall_time[-1]:.1f} s)",
                flush=True,
            )
        columns = [f"task_{j}" for j in range(len(row))] if results.stream_accuracy is None else results.column_names
        log = {f"{measure}/{column}": a for column, a in zip(columns, row) if a is not None}
        log[f"{measure}/average"] = sum(measured) / len(measured)
        if results.has_cost:  # what the stage cost
            log.update({f"cost/stage_{key}": values[-1] for key, values in results.cost()["per_stage"].items()})
        at = max(self.last_step, 0)  # the last step logged: before a resumed run's next step
        for logger in self.destinations:
            logger.log_stage(stage, at, log)

    def finish(self, results: Results) -> None:
        """Draw the plots, print the table, log the summary, close the loggers, and write the
        final results last: a run stopped before they are written is not marked complete (on
        disk), and `--resume` finishes it."""
        from sylvan.analysis.plots import plots_of

        plots = {}
        for name, plot in plots_of(results):
            path = self.run_dir / f"{name}.png"
            with writing(path):
                plots[name] = plot(results, path)
        if self.verbose:
            print(results.table())
            print(f"[sylvan] results written to {self.run_dir}")
        summary = {key: value for key, value in results.summary().items() if value is not None}
        if results.has_cost:  # what the run cost (`sylvan.run.accounting`)
            summary.update({f"cost/{key}": value for key, value in results.cost().items() if key != "per_stage"})
        for logger in self.destinations:
            logger.log_summary(summary, plots)
            logger.close()
        if self.verbose and self.wandb_run is not None and self.wandb_run.offline:
            print(f"[sylvan] logged to Weights & Biases offline; upload it with: wandb sync "
                  f"{Path(self.wandb_run.dir).parent}", flush=True)
        self.write_results(results)


def log_damage(run_dir: Path, state: dict[str, Any]) -> str | None:
    """Why `logs/train.csv` in `run_dir` cannot be cut back to where a checkpoint's tracker
    `state` says it stood (`recorded_log`); None where it can."""
    return recorded_log(run_dir, state)[1]


def record_provenance(run_dir: Path, event: str, run_id: str | None = None) -> None:
    """Add to the run's `provenance.json` what produced this part of the run: its start, or a
    resumption (`sylvan.run.provenance`), and the run's id. Earlier entries are kept; a file that
    cannot be read (a damaged one) is started again."""
    entry = provenance_entry(event)
    if run_id is not None:
        entry["run_id"] = run_id
    write_json(run_dir / PROVENANCE_FILE, {"history": [*provenance_history(run_dir), entry]})


def provenance_history(run_dir: Path) -> list[Any]:
    """The entries of the run's `provenance.json` (none where it is missing or cannot be read)."""
    path = run_dir / PROVENANCE_FILE
    try:
        recorded = json.loads(path.read_text()).get("history")
    except (OSError, ValueError, AttributeError):
        recorded = None
    return recorded if isinstance(recorded, list) else []


def recorded_run_id(run_dir: Path) -> str | None:
    """The id the run in `run_dir` got when it started (None for a run of an older version)."""
    ids = [entry.get("run_id") for entry in provenance_history(run_dir) if isinstance(entry, dict)]
    return next((run_id for run_id in ids if isinstance(run_id, str)), None)


def foreign_checkpoint(run_dir: Path, checkpoint: Any) -> str | None:
    """Why `checkpoint`, found in `run_dir`, is not the run's own: it was written by a run of
    another id (copied from another run folder); None where it is (or where either predates ids)."""
    written_by = (checkpoint.tracker_state or {}).get("run_id")
    own = recorded_run_id(run_dir)
    if written_by is None or own is None or written_by == own:
        return None
    return (f"--resume {run_dir}: {checkpoint.path} is a checkpoint of another run (run id {written_by}), not of the "
            f"run in this folder (run id {own}, in its provenance.json): it was copied from another run's folder. "
            "Put the run's own checkpoints back, or resume the other run from its own folder")


def write_stage_costs(path: Path, results: Results) -> None:
    """`logs/cost.csv`: a row per finished stage with what it cost (rewritten whole after each
    stage, so that a resumed run's file is an uninterrupted one's)."""
    costs = results.cost()["per_stage"]
    write_rows(path, [{"stage": stage, **dict(zip(costs, row))} for stage, row in enumerate(zip(*costs.values()))])


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically, so that an interrupted run never leaves a truncated file."""
    tmp = path.with_suffix(".json.tmp")
    with writing(path):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)


def unique_run_dir(results_dir: Path, run_name: str) -> Path:
    """`results_dir/run_name`, or with a numeric suffix if it exists already. The folder is
    claimed by creating it (which fails if it exists), so that runs started at once, as in a
    sweep whose default names share the second, each get a folder of their own."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_name) or "run"
    results_dir.mkdir(parents=True, exist_ok=True)
    suffix = 1
    while True:
        candidate = results_dir / (safe if suffix == 1 else f"{safe}_{suffix}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            suffix += 1


def default_run_name(setting: str, method: str) -> str:
    return f"{setting}-{method}-{time.strftime('%Y%m%d-%H%M%S')}"


WANDB_RUN_FILE = "wandb_run.json"
PROVENANCE_FILE = "provenance.json"


def recorded_wandb_run_id(run_dir: Path) -> str | None:
    """The id of the W&B run a run folder logged to, if it did."""
    try:
        with open(run_dir / WANDB_RUN_FILE) as f:
            run_id = json.load(f).get("id")
    except (OSError, ValueError, AttributeError):
        return None
    return run_id if isinstance(run_id, str) and run_id else None


WANDB_MODES = ("online", "offline", "disabled", "shared", "dryrun", "run")  # what W&B's settings accept


def check_wandb_mode() -> None:
    """Refuse a `WANDB_MODE` that W&B does not know, in sylvan's words (W&B's own is a pydantic
    validation error, raised only once the run's folder is written)."""
    mode = os.environ.get("WANDB_MODE")
    if mode is not None and mode not in WANDB_MODES:
        raise ConfigurationError(
            f"the environment variable WANDB_MODE is {mode!r}, which W&B does not know: set it to one of "
            f"{', '.join(WANDB_MODES)}, or unset it (then W&B logs online where it has credentials, offline elsewhere)"
        )


def start_wandb(
    project: str, entity: str | None, name: str, config: dict[str, Any], run_dir: Path, run_id: str | None = None,
    group: str | None = None,
) -> Any:
    """Start a W&B run; offline when there are no credentials (or WANDB_MODE says so), and
    falling back to offline when the service cannot be reached. With `run_id` (a resumed run),
    continue that W&B run: online, the steps logged before the interruption are kept and the
    run goes on after them; offline, the new files carry the same id and `wandb sync` appends
    them to it."""
    import wandb

    check_wandb_mode()
    mode = os.environ.get("WANDB_MODE")
    if mode is None:
        has_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
        mode = "online" if has_key else "offline"
    kwargs = dict(project=project, entity=entity, group=group, name=name, config=config, dir=str(run_dir),
                  reinit="finish_previous")
    if run_id is not None:
        kwargs.update(id=run_id, resume="allow")
    try:
        return wandb.init(mode=mode, settings=wandb.Settings(init_timeout=60, silent=True), **kwargs)
    except Exception as error:  # network or authentication failure: keep the run, log offline
        if mode == "offline":
            raise
        print(f"[sylvan] W&B unreachable ({error}); logging offline in {run_dir}/wandb")
        return wandb.init(mode="offline", settings=wandb.Settings(silent=True), **kwargs)


def _netrc_has_wandb() -> bool:
    try:
        import netrc

        auth = netrc.netrc().authenticators("api.wandb.ai")
        return auth is not None
    except (OSError, netrc.NetrcParseError):
        return False
