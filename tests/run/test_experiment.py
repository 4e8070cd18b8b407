"""Running experiments from Python: the same run folder as the command line, reproducible and
resumable by it."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import yaml

from sylvan.errors import ConfigurationError, InapplicableMethodError, TrainingDivergedError
from sylvan.methods import EWC, METHODS, Naive, Rehearsal
from sylvan.run.experiment import RunOptions, defining_plugins, run_experiment
from sylvan.settings import ClassIncrementalSetting, OnlineSetting
from tests.conftest import REPO, loaded_from_file, tiny_options


@pytest.fixture
def l2_anchor_module():
    """examples/l2_anchor.py loaded from its file, as a script or notebook would, and
    unregistered afterwards."""
    with loaded_from_file(REPO / "examples" / "l2_anchor.py", METHODS) as module:
        yield module


def test_a_run_from_python_is_reproduced_by_the_command_line(tmp_path, l2_anchor_module):
    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting))
    method = l2_anchor_module.L2Anchor(strength=0.5)
    results = run_experiment(setting, method, RunOptions(results_dir=str(tmp_path), run_name="api"))
    run_dir = tmp_path / "api"
    written = json.loads((run_dir / "results.json").read_text())
    assert written["accuracy_matrix"] == results.accuracy_matrix and len(results.accuracy_matrix) == 2
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    # the method's file is recorded, so the command line loads it without --plugin
    assert config["plugins"] == [str((REPO / "examples" / "l2_anchor.py").resolve())]
    assert config["method_options"]["strength"] == 0.5 and config["run"]["run_name"] == "api"
    again = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "--config_path", str(run_dir / "config.yaml"),
         "--results_dir", str(tmp_path), "--run_name", "cli"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "cli" / "results.json").read_text()) == written


@pytest.mark.parametrize("option", ["wandb_group", "wandb_entity"])
def test_wandb_options_without_a_project_are_refused_before_anything_is_written(tmp_path, option):
    """Without --wandb_project nothing is logged to W&B: a group or entity would be ignored."""
    options = RunOptions(results_dir=str(tmp_path), **{option: "sweep"})
    with pytest.raises(ConfigurationError, match=f"--{option} has no effect without --wandb_project"):
        run_experiment(OnlineSetting(**tiny_options(OnlineSetting)), Naive(), options)
    assert not any(tmp_path.iterdir())


def test_a_wandb_project_without_wandb_installed_is_refused_with_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what an environment without the package gives
    options = RunOptions(results_dir=str(tmp_path), wandb_project="lab")
    with pytest.raises(ConfigurationError, match="--wandb_project logs to Weights & Biases, whose package is not "
                                                 "installed here: pip install wandb"):
        options.check()


def test_a_wandb_project_name_that_wandb_refuses_is_refused_before_anything_is_written(tmp_path):
    pytest.importorskip("wandb")
    options = RunOptions(results_dir=str(tmp_path), wandb_project="lab/continual#1")
    with pytest.raises(ConfigurationError, match="--wandb_project: Invalid project name 'lab/continual#1'"):
        run_experiment(OnlineSetting(**tiny_options(OnlineSetting)), Naive(), options)
    assert not any(tmp_path.iterdir())


def test_built_in_classes_need_no_plugin_and_an_inapplicable_pair_writes_nothing(tmp_path):
    assert defining_plugins(OnlineSetting(), Rehearsal()) == []
    with pytest.raises(InapplicableMethodError):
        run_experiment(OnlineSetting(**tiny_options(OnlineSetting)), EWC(), RunOptions(results_dir=str(tmp_path)))
    assert not any(tmp_path.iterdir())
    results = run_experiment(OnlineSetting(**tiny_options(OnlineSetting)), Naive(),
                             RunOptions(results_dir=str(tmp_path), run_name="online", save_checkpoints=False))
    assert results.online_accuracy is not None
    assert "plugins" not in yaml.safe_load((tmp_path / "online" / "config.yaml").read_text())
    assert not (tmp_path / "online" / "checkpoints").exists()


@dataclass
class DivergesInSecondTask(Naive):
    """Fine-tuning whose weights turn NaN during its second task."""

    name: ClassVar[str] = ""  # not registered
    state_attributes: ClassVar[tuple[str, ...]] = ("fits",)

    def configure(self, run):
        super().configure(run)
        self.fits = 0

    def fit(self, train_data, val_data=None):
        self.fits += 1
        super().fit(train_data, val_data)

    def after_step(self):
        if self.fits == 2:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))


def test_a_diverged_run_stops_with_the_tasks_before_it_kept(tmp_path):
    """Weights that training made NaN would predict one class for ever after, reported as chance
    accuracy on every later task: the run stops at the task where it happened."""
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "nb_tasks": 3})
    with pytest.raises(TrainingDivergedError, match="NaN or infinite.*smaller --lr"):
        run_experiment(setting, DivergesInSecondTask(), RunOptions(results_dir=str(tmp_path), run_name="nan"))
    results = json.loads((tmp_path / "nan" / "results.json").read_text())
    assert len(results["accuracy_matrix"]) == 1 and not results["complete"]
    assert (tmp_path / "nan" / "checkpoints" / "after_stage_0.pt").is_file()


def test_a_diverged_run_is_a_message_and_status_1(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "--setting", "class_incremental", "--method", "naive", "--lr", "1e8",
         "--results_dir", str(tmp_path), "--progress_bar", "false"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert out.returncode == 1
    assert "sylvan: run failed: training diverged" in out.stderr and "Traceback" not in out.stderr
