"""A first task with more classes than the others (--initial_classes), as in the class-incremental
protocols that start from half of the classes (CIFAR-100 as 50, then 5 tasks of 10)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sylvan.errors import ConfigurationError
from sylvan.methods import Rehearsal
from sylvan.run.experiment import RunOptions, run_experiment
from sylvan.settings import ClassIncrementalSetting, DomainIncrementalSetting, OnlineSetting
from tests.conftest import REPO


def setting(**options) -> ClassIncrementalSetting:
    return ClassIncrementalSetting(dataset="digits", progress_bar=False, **options)


def test_the_first_task_takes_its_classes_and_the_others_share_the_rest():
    assert setting().class_increments() == [2, 2, 2, 2, 2]
    assert setting(nb_tasks=4, initial_classes=4).class_increments() == [4, 2, 2, 2]
    assert setting(nb_tasks=3, initial_classes=5).class_increments() == [5, 3, 2]
    assert setting(nb_tasks=2, initial_classes=9).class_increments() == [9, 1]
    tasks = setting(nb_tasks=4, initial_classes=4).prepare_tasks()
    assert [task.classes for task in tasks] == [[0, 1, 2, 3], [4, 5], [6, 7], [8, 9]]
    online = OnlineSetting(dataset="digits", nb_tasks=3, initial_classes=6, progress_bar=False).prepare_tasks()
    assert [task.classes for task in online] == [[0, 1, 2, 3, 4, 5], [6, 7], [8, 9]]


@pytest.mark.parametrize("options, message", [
    ({"nb_tasks": 4, "initial_classes": 0}, "between 1 and 7 for digits, got 0"),
    ({"nb_tasks": 4, "initial_classes": 8}, "between 1 and 7 for digits, got 8"),
    ({"nb_tasks": 1, "initial_classes": 10}, "needs --nb_tasks 2 or more"),
])
def test_a_split_that_leaves_a_task_without_classes_is_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        setting(**options)


def test_domain_incremental_refuses_it():
    with pytest.raises(ConfigurationError, match="--initial_classes 4 has no effect: every task of domain"):
        DomainIncrementalSetting(dataset="digits", initial_classes=4, progress_bar=False)


def test_a_run_with_a_larger_first_task(tmp_path):
    results = run_experiment(
        setting(nb_tasks=3, initial_classes=6, epochs=1, seed=0, accelerator="cpu"),
        Rehearsal(buffer_size=100), RunOptions(results_dir=str(tmp_path), save_checkpoints=False),
    )
    assert len(results.accuracy_matrix) == 3
    first, *others = results.samples_seen
    assert first > 2 * max(others)  # six classes against two


def test_the_command_line_offers_it():
    out = subprocess.run([sys.executable, str(REPO / "cli.py"), "--setting", "class_incremental", "--method",
                          "rehearsal", "--help"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0 and "--initial_classes" in out.stdout
