"""Blurry task boundaries (--blurry): each class gives a share of its training samples to the
other tasks; nothing else about the stream changes."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from sylvan.errors import ConfigurationError
from sylvan.methods import Method, Rehearsal
from sylvan.run.task_data import TaskData
from sylvan.settings import (
    ClassIncrementalSetting,
    DomainIncrementalSetting,
    MultiTaskSetting,
    OnlineSetting,
    Setting,
    TaskIncrementalSetting,
)
from sylvan.settings.data.streams import blur_tasks
from tests.conftest import REPO


def digits_tasks(setting_cls=ClassIncrementalSetting, **options) -> list[TaskData]:
    return setting_cls(dataset="digits", progress_bar=False, **{"nb_tasks": 5, **options}).prepare_tasks()


def rows_by_class(tasks: list[TaskData]) -> dict[int, Counter]:
    """Per class, its training samples (as bytes) and how often each occurs, over all tasks."""
    rows: dict[int, Counter] = {}
    for task in tasks:
        for x, y in zip(task.x_train, task.y_train.tolist()):
            rows.setdefault(y, Counter())[x.numpy().tobytes()] += 1
    return rows


def label_counts(task: TaskData) -> Counter:
    return Counter(task.y_train.tolist())


def test_each_class_gives_its_share_to_the_other_tasks_and_keeps_the_rest():
    disjoint, blurred = digits_tasks(), digits_tasks(blurry=0.2)
    assert rows_by_class(blurred) == rows_by_class(disjoint), "no sample may be lost, repeated or relabeled"
    for before, after in zip(disjoint, blurred):
        assert after.classes == before.classes
        assert torch.equal(after.x_test, before.x_test) and torch.equal(after.y_test, before.y_test)
        own = label_counts(after)
        for label in before.classes:
            total = int((before.y_train == label).sum())
            assert own[label] == total - round(0.2 * total)
    for task in blurred:
        foreign = sum(count for label, count in label_counts(task).items() if label not in task.classes)
        assert 0.12 < foreign / len(task.y_train) < 0.28, "about a fifth of each task comes from the others"


def test_given_samples_spread_evenly_over_the_other_tasks():
    """Over all classes, every (task of the class, task it is given to) pair receives about the
    same share: a rule that gave everything to the next task, or to the first, would fail."""
    tasks = digits_tasks(blurry=0.5)
    owner = {label: task.task_id for task in tasks for label in task.classes}
    received = np.zeros((5, 5), dtype=int)
    for task in tasks:
        for label, count in label_counts(task).items():
            received[owner[label], task.task_id] += count
    given = received[~np.eye(5, dtype=bool)]
    expected = given.mean()
    assert expected > 30 and np.all(np.abs(given - expected) < 0.4 * expected), received


def test_at_t_minus_1_over_t_every_class_is_spread_evenly_over_the_stream():
    tasks = digits_tasks(blurry=0.8)
    for label in range(10):
        counts = np.array([label_counts(task)[label] for task in tasks])
        assert counts.min() > 0.5 * counts.mean() and counts.max() < 1.5 * counts.mean(), counts


def test_the_blur_is_drawn_with_the_seed():
    first, again, other = digits_tasks(blurry=0.3), digits_tasks(blurry=0.3), digits_tasks(blurry=0.3, seed=1)
    assert all(torch.equal(a.y_train, b.y_train) and torch.equal(a.x_train, b.x_train) for a, b in zip(first, again))
    assert any(not torch.equal(a.x_train, b.x_train) for a, b in zip(first, other))


def test_zero_leaves_the_tasks_as_they_are_and_pixels_stay_pixels():
    disjoint = digits_tasks()
    assert blur_tasks(disjoint, 0.0, seed=0) is disjoint
    blurred = blur_tasks(disjoint, 0.25, seed=0)
    assert all(task.x_train.dtype == disjoint[0].x_train.dtype for task in blurred)


def test_tasks_that_share_classes_cannot_be_blurred():
    tasks = digits_tasks()
    tasks[1].classes = tasks[1].classes + [tasks[0].classes[0]]
    with pytest.raises(ConfigurationError, match="distinct classes; class 0 is in tasks 0 and 1"):
        blur_tasks(tasks, 0.1, seed=0)


@dataclass
class LabelSpy(Method):
    """Records the labels of every batch it is given, fit by fit."""

    name: ClassVar[str] = ""  # not registered
    target_setting: ClassVar[type] = Setting

    def configure(self, run):
        super().configure(run)
        self.fits: list[list[int]] = []

    def fit(self, train_data, val_data=None):
        self.fits.append([label for batch in train_data for label in batch[1].tolist()])

    def predict(self, x, task_labels=None):
        return torch.zeros(len(x), self.run.num_classes)


def test_online_stream_shows_later_classes_early_and_earlier_classes_late():
    setting = OnlineSetting(dataset="digits", nb_tasks=5, blurry=0.2, progress_bar=False)
    spy = LabelSpy()
    setting.apply(spy)
    (stream,) = spy.fits
    segments = np.cumsum([0, *(len(task.y_train) for task in setting.prepare_tasks())])
    first, last = stream[: segments[1]], stream[segments[-2] :]
    assert any(label >= 2 for label in first), "the first part of the stream holds later classes"
    assert any(label < 8 for label in last), "the last part of the stream holds earlier classes"
    assert sorted(stream) == sorted(label for task in digits_tasks(OnlineSetting) for label in task.y_train.tolist())


def test_class_incremental_trains_each_task_on_its_blurred_set():
    setting = ClassIncrementalSetting(dataset="digits", nb_tasks=5, blurry=0.2, epochs=1, progress_bar=False)
    spy = LabelSpy()
    setting.apply(spy)
    for fit, task in zip(spy.fits, digits_tasks(blurry=0.2)):
        assert Counter(fit) == label_counts(task)
        assert set(fit) - set(task.classes), "each task holds samples of other tasks' classes"


@pytest.mark.parametrize("setting_cls, message", [
    (DomainIncrementalSetting, "--blurry does not apply to domain_incremental: every task holds every class"),
    (TaskIncrementalSetting, "--blurry does not apply to task_incremental: a task label at test time"),
    (MultiTaskSetting, "--blurry does not apply to multi_task: a task label at test time"),
])
def test_settings_where_tasks_are_not_made_of_their_own_classes_refuse_it(setting_cls, message):
    with pytest.raises(ConfigurationError, match=message):
        setting_cls(dataset="digits", blurry=0.1, progress_bar=False)


@pytest.mark.parametrize("options, message", [
    ({"blurry": -0.1}, r"--blurry must be in \[0, 1\), got -0.1"),
    ({"blurry": 1.0}, r"--blurry must be in \[0, 1\), got 1.0"),
    ({"blurry": 0.1, "nb_tasks": 1}, "--blurry needs --nb_tasks 2 or more"),
])
def test_invalid_values_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        ClassIncrementalSetting(dataset="digits", progress_bar=False, **options)


def test_a_blurry_rehearsal_run_learns_every_class():
    setting = ClassIncrementalSetting(dataset="digits", nb_tasks=5, blurry=0.1, epochs=1, seed=0,
                                      accelerator="cpu", progress_bar=False)
    results = setting.apply(Rehearsal(buffer_size=200))
    assert len(results.accuracy_matrix) == 5 and results.final_average_accuracy > 0.5


def test_the_command_line_takes_it_and_refuses_it_with_status_2():
    help_text = subprocess.run([sys.executable, str(REPO / "cli.py"), "--setting", "online", "--method",
                                "rehearsal", "--help"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert help_text.returncode == 0 and "--blurry" in help_text.stdout
    refused = subprocess.run([sys.executable, str(REPO / "cli.py"), "--setting", "task_incremental", "--method",
                              "naive", "--blurry", "0.1"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert refused.returncode == 2 and "--blurry does not apply to task_incremental" in refused.stderr
    assert "Traceback" not in refused.stderr
