from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from sylvan.methods import Naive
from sylvan.run.tracking import Tracker, recorded_wandb_run_id, unique_run_dir
from sylvan.settings import ClassIncrementalSetting
from tests.conftest import tiny_options


@dataclass
class CrashesOnThirdTask(Naive):
    name: ClassVar[str] = ""  # unregistered

    def on_task_start(self, task_id):
        if task_id == 2:
            raise RuntimeError("boom")


def test_finished_tasks_survive_a_crash(tmp_path):
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "nb_tasks": 5})
    tracker = Tracker(tmp_path, "crash", {"setting": "class_incremental"}, verbose=False)
    with pytest.raises(RuntimeError, match="boom"):
        setting.apply(CrashesOnThirdTask(), tracker)
    results = json.loads((tracker.run_dir / "results.json").read_text())
    assert len(results["accuracy_matrix"]) == 2 and results["complete"] is False
    assert (tracker.run_dir / "checkpoints" / "after_stage_1.pt").is_file()


def test_loss_log_steps_keep_growing_across_tasks(tmp_path):
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "batch_size": 2})
    tracker = Tracker(tmp_path, "steps", {}, verbose=False)
    tracker.finish(setting.apply(Naive(), tracker))
    lines = (tracker.run_dir / "logs" / "train.csv").read_text().splitlines()
    assert lines[0].startswith("step,")
    steps = [int(line.split(",")[0]) for line in lines[1:]]
    assert len(steps) >= 2 and steps == sorted(steps) and len(set(steps)) == len(steps)


@dataclass
class RecordsLosses(Naive):
    name: ClassVar[str] = ""  # unregistered

    def __post_init__(self):
        super().__post_init__()
        self.losses = []

    def training_step(self, batch):
        loss = super().training_step(batch)
        self.losses.append(loss.item())
        return loss


def test_the_loss_of_every_tenth_step_reaches_the_loggers(tmp_path):
    """The learner logs the loss only on the steps the Trainer writes (every 10th of each task):
    each of them must reach the logger with that step's own loss."""
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "batch_size": 2})
    tracker = Tracker(tmp_path, "every", {}, verbose=False)
    method = RecordsLosses()
    results = setting.apply(method, tracker)
    tracker.finish(results)
    rows = (tracker.run_dir / "logs" / "train.csv").read_text().splitlines()[1:]
    expected, start = [], 0
    for samples in results.samples_seen:
        steps = -(-samples // 2)
        expected += method.losses[start + 9 : start + steps : 10]
        start += steps
    assert start == len(method.losses) and expected
    assert [float(row.split(",")[1]) for row in rows] == pytest.approx(expected, rel=1e-6)


def test_unique_run_dirs_and_config(tmp_path):
    a = Tracker(tmp_path, "same", {"x": 1}, verbose=False)
    b = Tracker(tmp_path, "same", {"x": 2}, verbose=False)
    assert a.run_dir != b.run_dir
    assert yaml.safe_load((b.run_dir / "config.yaml").read_text()) == {"x": 2}


def test_runs_started_at_once_get_folders_of_their_own(tmp_path, monkeypatch):
    """A sweep's runs can start within the same second, under the same default name: each
    claims its folder by creating it, never by checking first and creating after."""
    names: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        names.append(unique_run_dir(tmp_path / "results", "same").name)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(names) == sorted(["same", *(f"same_{k}" for k in range(2, 9))])
    # another process creates the folder between a check and the creation: the next name is taken
    monkeypatch.setattr(Path, "exists", lambda self: False)
    assert unique_run_dir(tmp_path / "results", "same").name == "same_9"


@pytest.mark.slow
def test_wandb_offline_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting))
    tracker = Tracker(tmp_path, "wb", {"setting": "class_incremental"}, wandb_project="sylvan-test",
                      verbose=False)
    summary, finish = {}, tracker.wandb_run.finish
    tracker.wandb_run.finish = lambda: (summary.update(dict(tracker.wandb_run.summary)), finish())
    tracker.finish(setting.apply(Naive(), tracker))
    runs = list((tracker.run_dir / "wandb").glob("offline-run-*"))
    assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())
    kept = runs[0] / "files" / "provenance.json"  # uploaded with the run by `wandb sync`
    assert json.loads(kept.read_text())["history"][0]["event"] == "started"
    assert summary["cost/memory_bytes"] > 0 and summary["cost/training_flops"] > 0  # what the run cost


def test_a_resumed_run_logs_into_the_same_wandb_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = {"setting": "class_incremental"}
    first = Tracker(tmp_path, "wb", config, wandb_project="sylvan-test", wandb_group="sweep-1", verbose=False)
    run_id = first.wandb_run.id
    assert first.wandb_run.group == "sweep-1"
    first.wandb_run.finish()
    assert recorded_wandb_run_id(first.run_dir) == run_id
    resumed = Tracker(tmp_path, "wb", config, wandb_project="sylvan-test", verbose=False, resume_dir=first.run_dir)
    assert resumed.wandb_run.id == run_id
    resumed.wandb_run.finish()
    # offline, both parts carry the run's id, which `wandb sync` appends to one run
    parts = list((first.run_dir / "wandb").glob("offline-run-*"))
    assert len(parts) == 2 and all(f"-{run_id}" in p.name for p in parts)
    # a new run (not a resume) in the same results folder gets a W&B run of its own
    other = Tracker(tmp_path, "wb", config, wandb_project="sylvan-test", verbose=False)
    assert other.wandb_run.id != run_id
    other.wandb_run.finish()


def test_an_unreadable_wandb_record_starts_a_new_wandb_run(tmp_path):
    (tmp_path / "wandb_run.json").write_text("{not json")
    assert recorded_wandb_run_id(tmp_path) is None
    (tmp_path / "wandb_run.json").write_text('["a list"]')
    assert recorded_wandb_run_id(tmp_path) is None
    assert recorded_wandb_run_id(tmp_path / "missing") is None


def test_a_run_that_logs_one_step_per_task_numbers_every_row_anew(tmp_path):
    """Each task's Trainer counts its steps from 0: where each logs its step 0 alone (a task of
    fewer than 10 steps, er_ace's, a 2-worker run's), the rows must still get growing steps
    (W&B drops a row logged at a step it has seen)."""
    tracker = Tracker(tmp_path, "one_step", {}, verbose=False)
    (logger,) = tracker.loggers()
    for loss in (3.0, 2.0, 1.0):
        logger.log_metrics({"train/loss": loss, "epoch": 0}, step=0)
    rows = (tracker.run_dir / "logs" / "train.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == [0, 1, 2]
    assert logger.next_step == 3


class FakeWandbRun:
    """What a W&B run is told, without W&B."""

    id = "fake"
    offline = False

    def __init__(self, folder: Path) -> None:
        self.logged: list[dict] = []
        self.summary: dict = {}
        self.dir = str(folder)  # where the run's files go
        folder.mkdir(parents=True, exist_ok=True)

    def log(self, row, step=None):
        self.logged.append(dict(row))

    def save(self, *args, **kwargs):
        pass

    def finish(self):
        pass


def logged_by_each(run_dir: Path, wandb_run: FakeWandbRun) -> dict[str, set[str]]:
    """The names of the metrics each logger received: CSV's files, TensorBoard's scalar tags
    (the summary's under `summary/`), W&B's logged keys and summary."""
    import csv

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def csv_names(name: str) -> set[str]:
        with open(run_dir / "logs" / name) as f:
            return set(csv.DictReader(f).fieldnames) - {"step", "stage"}

    with open(run_dir / "logs" / "summary.csv") as f:
        summary = {row["name"] for row in csv.DictReader(f)}
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"]) - {"stage"}
    wandb_keys = {key for row in wandb_run.logged for key in row} - {"step", "stage"}
    return {
        "csv": csv_names("train.csv") | csv_names("stages.csv") | summary,
        "tensorboard": {tag.removeprefix("summary/") for tag in tags},
        "wandb": {key for key in wandb_keys if not key.endswith("_matrix") and not key.endswith("_curve")}
        | set(wandb_run.summary),
    }


def test_every_logger_gets_the_same_metrics(tmp_path, monkeypatch):
    """`--loggers csv tensorboard wandb`: the training log's steps, each stage's accuracies and
    costs, and the run's summary reach each of them, under the same names."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")  # its images carry the plots
    from sylvan.run import tracking
    from sylvan.run.experiment import RunOptions, run_experiment

    wandb_run = FakeWandbRun(tmp_path / "wandb_files")
    monkeypatch.setattr(tracking, "start_wandb", lambda *args, **kwargs: wandb_run)
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "batch_size": 4})
    options = RunOptions(results_dir=str(tmp_path), run_name="all", loggers=["csv", "tensorboard", "wandb"],
                         wandb_project="sylvan-test")
    monkeypatch.setattr(RunOptions, "check", lambda self: None)  # no W&B installation needed
    run_experiment(setting, Naive(), options)
    names = logged_by_each(tmp_path / "all", wandb_run)
    assert {"train/loss", "accuracy/task_0", "accuracy/average", "cost/stage_training_flops",
            "final_average_accuracy", "cost/training_flops"} <= names["csv"]
    assert names["csv"] == names["tensorboard"] == names["wandb"]


def test_a_resumed_runs_logs_are_an_uninterrupted_runs(tmp_path):
    """Resumed after its first task, a run's CSV stages and TensorBoard scalars hold each step
    and stage once, with an uninterrupted run's values (what was logged after the checkpoint is
    dropped: TensorBoard's purge step, the CSV log cut back)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sylvan.cli import run as cli_run
    from sylvan.run.experiment import RunOptions, run_experiment

    def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
        events = EventAccumulator(str(run_dir / "tensorboard"))
        events.Reload()
        return [(event.step, event.value) for event in events.Scalars(tag)]

    folders = {}
    for name in ("whole", "resumed"):
        setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "nb_tasks": 3, "batch_size": 2})
        run_experiment(setting, Naive(), RunOptions(results_dir=str(tmp_path), run_name=name,
                                                    loggers=["csv", "tensorboard"]))
        folders[name] = tmp_path / name
    for stage in (1, 2):
        (folders["resumed"] / "checkpoints" / f"after_stage_{stage}.pt").unlink()
    assert cli_run(["--resume", str(folders["resumed"])]) == 0
    whole, resumed = folders["whole"], folders["resumed"]
    for tag in ("train/loss", "accuracy/average", "summary/final_average_accuracy"):
        assert scalars(resumed, tag) == scalars(whole, tag), tag
    steps = [step for step, _ in scalars(resumed, "train/loss")]
    assert len(steps) == len(set(steps)) > 3
    assert (resumed / "logs" / "stages.csv").read_text() == (whole / "logs" / "stages.csv").read_text()


@pytest.mark.parametrize(("loggers", "message"), [
    (["cvs"], "unknown logger 'cvs'; valid loggers: csv, tensorboard, wandb"),
    (["csv", "wandb"], "--loggers wandb logs to the Weights & Biases project --wandb_project names"),
])
def test_loggers_that_cannot_log_are_refused_before_the_run_starts(tmp_path, loggers, message):
    from sylvan.errors import ConfigurationError, UnknownNameError
    from sylvan.run.experiment import RunOptions, run_experiment

    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting))
    with pytest.raises((ConfigurationError, UnknownNameError), match=message):
        run_experiment(setting, Naive(), RunOptions(results_dir=str(tmp_path / "results"), loggers=loggers))
    assert not (tmp_path / "results").exists()


def test_a_reinforcement_learning_runs_stage_log_gives_each_stage_its_last_logged_step(tmp_path):
    """The training log of an RL run counts environment steps (an episode's row at the step it
    ended): each stage's row in stages.csv is at the last of its stage's steps, as in the
    supervised runs, not at 0."""
    import csv

    from sylvan.methods import METHODS
    from sylvan.run.experiment import RunOptions, run_experiment
    from sylvan.settings import IncrementalRLSetting
    from tests.conftest import tiny_method

    setting = IncrementalRLSetting(**tiny_options(IncrementalRLSetting, METHODS["dqn"]))
    run_experiment(setting, tiny_method(METHODS["dqn"]), RunOptions(results_dir=str(tmp_path), run_name="rl"))
    logs = tmp_path / "rl" / "logs"
    with open(logs / "train.csv") as f:
        steps = [int(float(row["step"])) for row in csv.DictReader(f)]
    with open(logs / "stages.csv") as f:
        stage_steps = [int(float(row["step"])) for row in csv.DictReader(f)]
    per_task = setting.steps_per_task
    assert stage_steps == [max(s for s in steps if s <= (stage + 1) * per_task) for stage in range(setting.nb_tasks)]
    assert 0 < stage_steps[0] < stage_steps[1]


def test_an_offline_wandb_run_says_so_once_with_its_sync_command_and_nothing_else_of_wandb(tmp_path):
    pytest.importorskip("wandb")
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path)  # no credentials: offline
    done = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "--setting", "class_incremental", "--method", "naive",
         "--dataset", "synthetic", "--train_samples", "100", "--nb_tasks", "2", "--progress_bar", "false",
         "--wandb_project", "proj", "--results_dir", str(tmp_path / "r"), "--run_name", "run"],
        capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    (offline,) = (tmp_path / "r" / "run" / "wandb").glob("offline-run-*")
    lines = [line for line in output.splitlines() if "W&B" in line or "Weights & Biases" in line
             or line.lower().startswith("wandb")]
    assert lines == [f"[sylvan] logged to Weights & Biases offline; upload it with: wandb sync {offline}"], lines
    assert (offline / "files" / "provenance.json").is_file()
