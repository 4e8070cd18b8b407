"""Running an experiment: one setting, one method, a run folder (and W&B), from Python or the
command line alike.

    from sylvan.run.experiment import RunOptions, run_experiment
    from sylvan.methods import Rehearsal
    from sylvan.settings import ClassIncrementalSetting

    results = run_experiment(ClassIncrementalSetting(dataset="digits", seed=1),
                             Rehearsal(buffer_size=500, buffer_policy="class_balanced"),
                             RunOptions(results_dir="results", run_name="cb-500"))
    print(results.final_average_accuracy)

The run folder is the one `sylvan --setting ... --method ...` writes, `config.yaml` included, so
a run started from Python is reproduced with `sylvan --config_path` and continued with
`sylvan --resume`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.machinery import PathFinder
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from sylvan.analysis.metrics import Results
from sylvan.errors import ConfigurationError, OutputNotWritten, RunInterrupted
from sylvan.parallel.health import planned_workers, writes_run_folder
from sylvan.run.budget import refuse_over_budget_ahead
from sylvan.run.checkpoints import checkpointed_stages
from sylvan.run.folder_lock import RunFolderLock
from sylvan.run.loggers import check_loggers
from sylvan.run.pairing import check_pair
from sylvan.run.signals import sigterm_stops_the_run, stop_description
from sylvan.run.tracking import Tracker, check_wandb_mode, default_run_name

if TYPE_CHECKING:
    from sylvan.methods import Method
    from sylvan.settings import Setting


@dataclass
class RunOptions:
    """Where and how a run's outputs are written."""

    results_dir: str = "results"  # folder that receives one sub-folder per run
    run_name: Optional[str] = None  # name of the run's folder (default: setting-method-time)
    wandb_project: Optional[str] = None  # log to this Weights & Biases project (offline without credentials)
    wandb_entity: Optional[str] = None  # W&B entity (team or user)
    wandb_group: Optional[str] = None  # W&B group the run joins (the runs of one sweep or comparison)
    save_checkpoints: bool = True  # save the method's state after each task
    # where the metrics go, one or several of: csv (logs/ in the run's folder), tensorboard (tensorboard/ in
    # the run's folder), wandb (Weights & Biases; --wandb_project alone adds it)
    loggers: list[str] = field(default_factory=lambda: ["csv"])

    def check(self) -> None:
        """Refuse W&B options that would be ignored (without a project nothing is logged), and a
        project name W&B refuses, before the run's folder is made rather than after. Checked when
        a run starts (not on --resume, which takes what the run recorded)."""
        check_loggers(self.loggers)
        if "wandb" in self.loggers and not self.wandb_project:
            raise ConfigurationError("--loggers wandb logs to the Weights & Biases project --wandb_project names: "
                                     "give --wandb_project PROJECT")
        for name in ("wandb_entity", "wandb_group"):
            if getattr(self, name) is not None and self.wandb_project is None:
                raise ConfigurationError(
                    f"--{name} has no effect without --wandb_project: nothing is logged to Weights & Biases"
                )
        if self.wandb_project:
            try:
                import wandb
            except ImportError as error:
                raise ConfigurationError("--wandb_project logs to Weights & Biases, whose package is not installed "
                                         "here: pip install wandb") from error
            check_wandb_mode()

            try:
                wandb.Settings(project=self.wandb_project)  # W&B's own rule for project names
            except Exception as error:  # noqa: BLE001 - whatever W&B's validation raises
                raise ConfigurationError(f"--wandb_project: {error}") from error


def run_config(setting: Setting, method: Method, options: RunOptions, plugins: Sequence[str] = ()) -> dict[str, Any]:
    """The configuration a run records in its `config.yaml`: what `--config_path` reloads and
    `--resume` continues (plugin files by absolute path, so that any folder can load them)."""
    config: dict[str, Any] = {
        "setting": type(setting).name,
        "method": method.name,
        "setting_options": asdict(setting),
        "method_options": method.hparams(),
        "run": asdict(options),
    }
    if plugins:
        config["plugins"] = [plugin_reference(plugin) for plugin in plugins]
    code = plugin_code(setting, method)
    if code:
        config["plugin_code"] = code
    return config


def plugin_code(setting: Setting, method: Method) -> dict[str, dict[str, str]]:
    """What identifies the code of the setting and the method where a plugin defines them (not
    sylvan): the file of each class's module and the SHA-256 of its bytes, by "setting NAME" and
    "method NAME". A resumed run whose plugin has other code under the same name is refused
    (`sylvan.run.checkpoints.configuration_changes`); the same code from another place is not."""
    import hashlib

    code: dict[str, dict[str, str]] = {}
    for kind, obj in (("setting", setting), ("method", method)):
        module = sys.modules.get(type(obj).__module__)
        name = getattr(module, "__name__", "")
        file = getattr(module, "__file__", None)
        if module is None or file is None or name == "sylvan" or name.startswith("sylvan."):
            continue
        try:
            digest = hashlib.sha256(Path(file).read_bytes()).hexdigest()
        except OSError:
            continue  # gone since it was imported: nothing to identify it by
        code[f"{kind} {type(obj).name}"] = {"file": str(Path(file).resolve()), "sha256": digest}
    return code


def plugin_reference(plugin: str) -> str:
    """How a run's config.yaml records a plugin: a file by its absolute path, so that the run
    can be resumed or reproduced from any folder; a module by its name."""
    path = Path(plugin).expanduser()
    return str(path.resolve()) if path.suffix == ".py" else plugin


def defining_plugins(*objects: Any) -> list[str]:
    """The plugins that define the classes of `objects`, where those are not sylvan's own: the
    module's name where it can be imported by that name, else its file (a script, or a file
    loaded by path). A class defined where no file holds it (an interactive session) has none."""
    plugins: list[str] = []
    for obj in objects:
        module = sys.modules.get(type(obj).__module__)
        name = getattr(module, "__name__", "")
        if module is None or name == "sylvan" or name.startswith("sylvan."):
            continue
        file = getattr(module, "__file__", None)
        if file is not None and name != "__main__" and importable_from_path(name, file):
            reference = name
        elif file is not None:
            reference = str(Path(file).resolve())
        else:
            continue
        if reference not in plugins:
            plugins.append(reference)
    return plugins


def importable_from_path(name: str, file: str) -> bool:
    """Whether `import name` in a new process (same sys.path) finds `file`: searched on the path,
    not in `sys.modules`, where a module loaded from a file under any name is found too."""
    search_path = None
    spec = None
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        try:
            spec = PathFinder.find_spec(".".join(parts[:depth]), search_path)
        except (ImportError, ValueError):
            return False
        if spec is None:
            return False
        search_path = spec.submodule_search_locations
    return spec is not None and spec.origin is not None and Path(spec.origin).resolve() == Path(file).resolve()


def run_experiment(
    setting: Setting, method: Method, options: RunOptions | None = None, plugins: Sequence[str] | None = None
) -> Results | None:
    """Train and evaluate `method` on `setting`, writing the run's folder as it goes (results
    after every task, then plots and the console table) and, with `options.wandb_project`, W&B.
    `plugins`: the files or modules that define the setting or method where they are not built
    in, recorded in `config.yaml` for `--config_path` and `--resume`; by default, those that
    define their classes (`defining_plugins`). Returns the results; None on a data-parallel
    worker other than worker 0, which writes nothing. Stopped by Ctrl-C or SIGTERM:
    `RunInterrupted`, whose message says what was kept and how to continue."""
    options = options if options is not None else RunOptions()
    options.check()
    method = method.on_setting(setting) if hasattr(method, "on_setting") else method  # an RL pair's agent
    plugins = defining_plugins(setting, *getattr(method, "components", (method,))) if plugins is None else plugins
    check_pair(setting, method)  # before anything is written
    if options.save_checkpoints:
        refuse_unresumable(setting, method)
    refuse_over_budget_ahead(setting, method)
    if not writes_run_folder(setting):
        setting.apply(method, None)
        return None
    stages = setting.stages()  # its data loaded: missing data is refused before the run's folder exists
    run_name = options.run_name or default_run_name(type(setting).name, method.name)
    tracker = open_tracker(options, run_name, run_config(setting, method, options, plugins))
    print(f"[sylvan] {method.name} on {type(setting).name}, results in {tracker.run_dir}", flush=True)
    return run_to_the_end(setting, method, tracker, stages=stages)


def run_to_the_end(setting: Setting, method: Method, tracker: Tracker, resume_from: Any = None,
                   stages: Any = None) -> Results:
    """Apply `method` to `setting` (after the checkpoint `resume_from`, if given; on `stages`,
    made ahead, if given) and write the final results. Stopped by a signal (Ctrl-C, or SIGTERM
    from a cluster's scheduler), raise `RunInterrupted` saying what is kept and how to continue:
    results and checkpoints are written after every task, so only the task that was training is
    lost."""
    try:
        with sigterm_stops_the_run():
            results = setting.apply(method, tracker, resume=resume_from, stages=stages)
        tracker.finish(results)
    except KeyboardInterrupt as stop:  # Ctrl-C, or the StoppedBySignal of SIGTERM (`sylvan.run.signals`)
        cause, exit_status = stop_description(stop)
        run_dir = tracker.run_dir
        message = f"{cause}; the results of the tasks finished so far are in {run_dir}"
        if checkpointed_stages(run_dir, planned_workers(setting)) and resumable(setting, method):
            message += f"; continue the run with: sylvan --resume {run_dir}"
        raise RunInterrupted(message, exit_status) from None
    except OutputNotWritten as failure:  # said with what the run keeps
        resume = ""
        kept = checkpointed_stages(tracker.run_dir, planned_workers(setting))
        if kept and resumable(setting, method):  # the stages to come, or the final results, plots and logs
            resume = f"; once there is room, continue the run with: sylvan --resume {tracker.run_dir}"
        raise OutputNotWritten(failure.path, failure.reason, f"The results of the tasks finished before are kept "
                                                             f"in {tracker.run_dir}{resume}") from failure
    finally:
        tracker.release_folder()  # however the run ended: another process may now resume it
    return results


def refuse_unresumable(setting: Setting, method: Method) -> None:
    """Refuse, when the run starts, a run whose checkpoints could not resume it (a method whose
    checkpoint may miss part of its state: `Method.check_resumable`), rather than let it write
    them and find out at `--resume`, after the run was killed."""
    try:
        setting.check_resumable()
        method.check_resumable()
    except ConfigurationError as error:
        raise ConfigurationError(
            f"{error}. A run saves a checkpoint after every task so that, interrupted, it can be resumed; to run "
            "it without them, give --save_checkpoints false"
        ) from None


def resumable(setting: Setting, method: Method) -> bool:
    """Whether `sylvan --resume` accepts runs of this setting and method."""
    try:
        refuse_unresumable(setting, method)
    except ConfigurationError:
        return False
    return True


def open_tracker(options: RunOptions, run_name: str, config: dict[str, Any], resume_dir: Path | None = None,
                 folder_lock: RunFolderLock | None = None) -> Tracker:
    """The run's tracker (its folder, logs, W&B) with the run options, its folder locked for this
    process (`folder_lock`, where the caller took it already); a folder that cannot be written is
    a message, not a traceback."""
    try:
        return Tracker(
            options.results_dir, run_name, config, wandb_project=options.wandb_project,
            wandb_entity=options.wandb_entity, wandb_group=options.wandb_group, loggers=options.loggers,
            save_checkpoints=options.save_checkpoints, resume_dir=resume_dir, folder_lock=folder_lock,
        )
    except OSError as error:
        where = resume_dir if resume_dir is not None else f"under --results_dir {options.results_dir}"
        raise ConfigurationError(
            f"cannot write the run's folder {where} ({error}); give a folder that can be written"
        ) from error


