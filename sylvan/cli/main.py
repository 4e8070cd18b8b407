"""The command: `sylvan --setting NAME --method NAME [options of both]`, `--resume`, `--summarize`,
`--list`; mistakes print one paragraph and exit with status 2.

Parsing happens in two steps. First the names (`--setting`, `--method`, `--config_path`,
`--plugin`, `--list`) are read; then simple-parsing builds a parser from the chosen setting's and
method's dataclasses (`sylvan.cli.parsing`), so that every field is a flag with its comment as help text."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from sylvan.cli.config_files import load_config
from sylvan.cli.listing import general_help, settings_tree
from sylvan.cli.parsing import parse_options, unknown_options_message
from sylvan.cli.plugins import load_plugins, load_run_plugins
from sylvan.cli.process_exit import exit_process, leave_now
from sylvan.errors import ConfigurationError, RunFailedError, RunInterrupted, SylvanError
from sylvan.methods import check_applicable, get_method
from sylvan.parallel.health import planned_workers, worker_rank, writes_run_folder
from sylvan.run.budget import refuse_resuming_over_budget
from sylvan.run.checkpoints import configuration_changes, latest_checkpoint, nothing_to_resume, run_is_complete
from sylvan.run.experiment import open_tracker, run_config, run_experiment, run_to_the_end
from sylvan.run.folder_lock import RunFolderLock
from sylvan.run.tracking import foreign_checkpoint, log_damage
from sylvan.settings import Setting, get_setting


def _names_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--setting", help="setting to run (see --list)")
    parser.add_argument("--method", help="method to run (see --list)")
    parser.add_argument("--config_path", help="YAML file of options, e.g. a run's config.yaml")
    parser.add_argument(
        "--plugin", action="append", default=[],
        help="Python file or module that defines extra methods or settings (repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="print the settings tree and the methods that apply")
    parser.add_argument("--resume", help="folder of an interrupted run: train its remaining tasks")
    parser.add_argument("--summarize", nargs="+", help="results folders: mean ± std over seeds of their runs")
    parser.add_argument("--summary_csv", help="with --summarize: also write the table to this CSV file")
    parser.add_argument("--pareto", help="with --summarize: draw accuracy against cost to this PNG (and a CSV)")
    parser.add_argument("--version", action="store_true", help="print the versions of sylvan and its dependencies")
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def summary_tracking(arguments: Sequence[str], pareto: str | None) -> tuple[dict[str, str | None] | None, list[str]]:
    """The W&B options given with `--summarize` (project, entity, group), which log the Pareto
    table, and the arguments left. W&B options without `--pareto` are refused: nothing would be
    logged."""
    parser = argparse.ArgumentParser(add_help=False)
    for name in ("project", "entity", "group"):
        parser.add_argument(f"--wandb_{name}", dest=name)
    tracking, rest = parser.parse_known_args(list(arguments))
    given = {name: value for name, value in vars(tracking).items() if value is not None}
    if not given:
        return None, rest
    if pareto is None or "project" not in given:
        raise ConfigurationError("with --summarize, --wandb_project logs the Pareto table and plot: give --pareto "
                                 "FILE.png and --wandb_project PROJECT (--wandb_entity and --wandb_group with them)")
    return vars(tracking), rest




def run(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the experiment, write its results. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names, unparsed = _names_parser().parse_known_args(argv)
    if names.version:
        if unparsed or names.setting or names.method or names.config_path or names.list or names.resume:
            raise ConfigurationError("--version takes no other option: sylvan --version")
        from sylvan.run.provenance import version_text

        print(version_text())
        return 0
    if names.resume:
        if unparsed or names.setting or names.method or names.config_path or names.help or names.list:
            raise ConfigurationError(
                "--resume takes every option from the run's config.yaml: give only --resume RUN_DIR "
                "(and --plugin, only where a plugin file the run used has moved)"
            )
        return resume(Path(names.resume).expanduser(), names.plugin)
    if names.summarize or names.summary_csv or names.pareto:
        tracking, unparsed = summary_tracking(unparsed, names.pareto)
        if not names.summarize or unparsed or names.setting or names.method or names.config_path or names.list:
            raise ConfigurationError(
                "--summarize takes results folders (and --summary_csv FILE, --pareto FILE.png, --plugin FILE, "
                "and with --pareto, --wandb_project, --wandb_entity, --wandb_group) only: sylvan --summarize results "
                "[--summary_csv summary.csv] [--pareto pareto.png [--wandb_project PROJECT]]"
            )
        from sylvan.comparison.summary import summarize

        load_plugins(names.plugin)  # so that options a run did not record take the plugin's defaults
        print(summarize(names.summarize, names.summary_csv, names.pareto, tracking))
        return 0
    config = load_config(names.config_path)
    plugins = load_run_plugins(names.plugin, config, names.config_path or "")
    if names.list:
        print("\n".join(settings_tree()))
        return 0
    setting_name = names.setting or config.get("setting")
    method_name = names.method or config.get("method")
    if not setting_name or not method_name:
        if names.help:
            print(general_help())
            return 0
        missing = " and ".join(n for n, v in (("--setting", setting_name), ("--method", method_name)) if not v)
        raise ConfigurationError(
            f"missing {missing}. Example: sylvan --setting class_incremental --method rehearsal. "
            "Run `sylvan --list` to see the settings and the methods that apply to each."
        )
    setting_cls, method_cls = get_setting(setting_name), get_method(method_name)
    if setting_cls is Setting:
        raise ConfigurationError("the root setting is abstract; pick one of its descendants (sylvan --list)")
    check_applicable(method_cls, setting_cls)
    setting, method, options, unknown = parse_options(setting_cls, method_cls, config, argv)
    if unknown:
        raise ConfigurationError(unknown_options_message(unknown, setting_cls, method_cls))
    try:
        run_experiment(setting, method, options, plugins)
    except KeyboardInterrupt:
        if writes_run_folder(setting):
            raise
        return 130  # a data-parallel worker other than 0, which writes nothing: worker 0 says what was kept
    return 0


def resume(run_dir: Path, plugins: Sequence[str] = ()) -> int:
    """Continue the run in `run_dir` after its last checkpoint, with the options and plugins it
    was started with (`plugins`, where given, replace the recorded ones), writing into the
    same folder."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigurationError(f"--resume {run_dir}: no config.yaml there; give the folder of a run")
    config = load_config(str(config_path), named_by=f"--resume {run_dir}: the run's configuration")
    plugins = load_run_plugins(plugins, config, str(config_path))
    setting_cls, method_cls = get_setting(config.get("setting", "")), get_method(config.get("method", ""))
    setting, method, options, _ = parse_options(setting_cls, method_cls, config, [])
    setting.check_resumable()
    method.check_resumable()
    folder_lock = RunFolderLock(run_dir)
    if writes_run_folder(setting):  # before anything is read: another process may be writing the folder
        folder_lock.acquire()
    checkpoint = latest_checkpoint(run_dir, worker_rank(setting), planned_workers(setting))
    if run_is_complete(run_dir, checkpoint.stage):  # said before anything is restored or announced as resuming
        raise nothing_to_resume(run_dir)
    refuse_resuming_over_budget(checkpoint.results, checkpoint.stage, getattr(setting, "memory_budget", None),
                                method.name)
    damage = (foreign_checkpoint(run_dir, checkpoint) or log_damage(run_dir, checkpoint.tracker_state or {})
              if writes_run_folder(setting) else None)
    if damage:
        raise ConfigurationError(damage)
    config = run_config(setting, method, options, plugins)
    changes = configuration_changes(checkpoint.config, config)
    if changes:  # resumed, the run would be part one configuration and part another, recorded as the second
        raise ConfigurationError(
            f"--resume {run_dir}: its config.yaml no longer describes the run its checkpoints come from "
            f"({'; '.join(changes)}); put the recorded values back, or start a new run with the new ones"
        )
    if not writes_run_folder(setting):  # a data-parallel worker other than 0: it writes its checkpoints' parts only
        try:
            setting.apply(method, None, resume=checkpoint)
        except KeyboardInterrupt:
            return 130  # worker 0 says what was kept
        return 0
    stages = setting.stages()  # its data loaded: missing data is refused before anything is written
    tracker = open_tracker(options, run_dir.name, config, resume_dir=run_dir, folder_lock=folder_lock)
    print(f"[sylvan] resuming {method_cls.name} on {setting_cls.name} after stage {checkpoint.stage + 1}, "
          f"results in {run_dir}", flush=True)
    run_to_the_end(setting, method, tracker, resume_from=checkpoint, stages=stages)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: user mistakes print one paragraph and exit with status 2."""
    from sylvan.parallel.worker_processes import FINISHING_WAIT, STOPPING_WAIT, end_started_workers

    wait = STOPPING_WAIT  # however the run ends, the worker processes it started end with it
    try:
        status = run(argv)
        wait = FINISHING_WAIT
    except RunFailedError as error:
        # every data-parallel worker may fail alike (a divergence: their weights are the same);
        # each says which it is
        from sylvan.workers import process_rank

        worker = f" (worker {process_rank()})" if process_rank() else ""
        print(f"sylvan{worker}: run failed: {error}", file=sys.stderr)
        end_started_workers(wait)
        # a broken process group can abort in its destructors at interpreter exit: leave now
        # (every result was already written, atomically)
        leave_now(1)
    except SylvanError as error:
        print(f"sylvan: error: {error}", file=sys.stderr)
        sys.exit(2)
    except RunInterrupted as interrupted:
        print(f"sylvan: {interrupted}", file=sys.stderr)
        sys.exit(interrupted.exit_status)
    except KeyboardInterrupt:  # outside the training (loading data, starting up)
        print("sylvan: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the output's reader is gone (`sylvan --help | head -1`): nobody to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is still buffered goes nowhere
        sys.exit(128 + signal.SIGPIPE)
    finally:
        end_started_workers(wait)
    sys.exit(status)


def console() -> NoReturn:
    """The `sylvan` command and `python cli.py`: `main`, then `exit_process`, which skips the
    interpreter's teardown (1.5 to 2 s of garbage collection once torch and Lightning are
    loaded) after doing what a normal exit does (see sylvan/cli/process_exit.py)."""
    from sylvan.parallel.worker_processes import die_with_launcher

    die_with_launcher()  # a data-parallel worker: ends with the worker that started it
    try:
        main()
    except SystemExit as stop:
        exit_process(stop.code)
    exit_process(0)


if __name__ == "__main__":
    console()
