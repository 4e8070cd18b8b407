"""What a run does after its last training stage (a setting's work after the stream, the final
results, plots and logs) can be interrupted like the stages: the run is marked complete only once
all of it is written, and `--resume` finishes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sylvan.cli import run as cli_run
from sylvan.errors import ConfigurationError, RunInterrupted
from sylvan.methods import METHODS
from sylvan.run.experiment import RunOptions, run_experiment
from sylvan.run.tracking import Tracker
from sylvan.settings import ClassIncrementalSetting, DatasetStreamSetting
from tests.conftest import tiny_options

PLOTS = ("accuracy_matrix.png", "accuracy_curve.png", "confusion_matrix.png")


def class_incremental() -> ClassIncrementalSetting:
    return ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "nb_tasks": 3, "seed": 5})


def stream() -> DatasetStreamSetting:
    return DatasetStreamSetting(**{**tiny_options(DatasetStreamSetting), "forward_transfer": True, "seed": 2})


def stopped_once(monkeypatch, owner: type, name: str) -> None:
    """`owner.name` stops the run (as Ctrl-C does) the first time it is called."""
    original = getattr(owner, name)
    calls = []

    def stop(*args, **kwargs):
        if not calls:
            calls.append(1)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, stop)


def run(setting, method_name: str, folder: Path, name: str) -> Path:
    run_experiment(setting, METHODS[method_name](), RunOptions(results_dir=str(folder), run_name=name))
    return folder / name


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_a_run_stopped_while_writing_its_final_results_is_not_complete_and_resume_finishes_it(tmp_path, monkeypatch):
    full = run(class_incremental(), "rehearsal", tmp_path, "full")
    stopped_once(monkeypatch, Tracker, "finish")
    with pytest.raises(RunInterrupted, match="continue the run with: sylvan --resume"):
        run(class_incremental(), "rehearsal", tmp_path, "cut")
    cut = tmp_path / "cut"
    assert results_of(cut)["complete"] is False  # every stage trained, but not everything written
    assert not any((cut / plot).exists() for plot in PLOTS)

    assert cli_run(["--resume", str(cut)]) == 0
    assert results_of(cut) == results_of(full) and results_of(cut)["complete"] is True
    assert all((cut / plot).is_file() for plot in PLOTS)
    assert (cut / "logs" / "summary.csv").read_text() == (full / "logs" / "summary.csv").read_text()
    assert (cut / "logs" / "stages.csv").read_text() == (full / "logs" / "stages.csv").read_text()
    with pytest.raises(ConfigurationError, match="complete.*nothing to resume"):
        cli_run(["--resume", str(cut)])


def test_a_run_stopped_in_its_work_after_the_stream_resumes_it_and_records_what_it_computes(tmp_path, monkeypatch):
    """dataset_stream trains the method on each task alone after the stream (forward transfer):
    stopped there, the run is not complete, and its resumption computes what it lacked."""
    full = run(stream(), "naive", tmp_path, "full")
    assert results_of(full)["independent_accuracies"] is not None
    stopped_once(monkeypatch, DatasetStreamSetting, "alone")
    with pytest.raises(RunInterrupted, match="continue the run with"):
        run(stream(), "naive", tmp_path, "cut")
    cut = tmp_path / "cut"
    assert results_of(cut)["complete"] is False and results_of(cut).get("independent_accuracies") is None

    assert cli_run(["--resume", str(cut)]) == 0
    assert results_of(cut) == results_of(full)
    assert results_of(cut)["forward_transfer_per_task"] is not None


def test_a_finished_run_is_not_resumed(tmp_path):
    run_dir = run(class_incremental(), "naive", tmp_path, "done")
    written = results_of(run_dir)
    with pytest.raises(ConfigurationError, match="complete.*nothing to resume"):
        cli_run(["--resume", str(run_dir)])
    assert results_of(run_dir) == written


def test_results_returned_from_python_are_complete():
    assert class_incremental().apply(METHODS["naive"]()).complete
