"""Turning continuum scenarios into per-task tensors that settings hand out as datasets.

A setting reads every task once (`sylvan.settings.data.decoding`) and keeps the result as
tensors: training then draws minibatches from memory, with no per-sample transform on the hot
path, and evaluation reuses the same tensors after every task. Here too: class-stratified
subsets, validation splits held out of the training set, blurry boundaries, and the one-pass
stream of the online settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import TensorDataset

from sylvan.errors import ConfigurationError
from sylvan.minibatches import float_inputs
from sylvan.run.task_data import TaskData
from sylvan.settings.data.decoding import materialize

if TYPE_CHECKING:
    from continuum.datasets.base import _ContinuumDataset
    from continuum.scenarios import ContinualScenario


def subsample(
    dataset: _ContinuumDataset, size: int | None, seed: int, name: str = "the dataset"
) -> _ContinuumDataset:
    """A class-stratified random subset of `size` samples of an array-backed dataset (`name`,
    for messages): `size // C` samples of each of its C classes, one more for each of the first
    `size % C` classes (fewer for a class that has fewer). A `size` beyond the dataset's is
    refused rather than silently read as "all of it"."""
    from continuum.datasets import InMemoryDataset

    x, y, t = dataset.get_data()
    if size is None or size == len(y):
        return dataset
    if size > len(y):
        raise ConfigurationError(
            f"--train_samples {size} is more than the {len(y)} training samples of {name}; "
            "leave it out to train on all of them"
        )
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    classes = np.unique(y)
    per_class, extra = divmod(size, len(classes))
    for position, label in enumerate(classes):
        members = np.flatnonzero(y == label)
        quota = per_class + (1 if position < extra else 0)
        keep.append(rng.choice(members, size=min(quota, len(members)), replace=False))
    index = np.sort(np.concatenate(keep))
    return InMemoryDataset(
        x[index], y[index], None if t is None else t[index],
        data_type=dataset.data_type, train=dataset.train,
    )


def holdout(
    dataset: _ContinuumDataset, fraction: float, seed: int, name: str = "the dataset"
) -> tuple[_ContinuumDataset, _ContinuumDataset]:
    """Split an array-backed training set into (training, validation), class by class: a seeded
    random `fraction` of each class's samples (rounded, at least one, and at least one left to
    train on) is held out. The validation split stands in for the test set while
    hyperparameters are tuned, so that the test set is never looked at."""
    from continuum.datasets import InMemoryDataset

    x, y, t = dataset.get_data()
    rng = np.random.default_rng([seed, 7])  # not the stream `subsample` draws from
    held: list[np.ndarray] = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        if len(members) < 2:
            raise ConfigurationError(
                f"--validation_fraction: class {label} of {name} has {len(members)} training sample(s); "
                "holding out a validation sample needs at least 2 (raise --train_samples)"
            )
        count = min(max(round(fraction * len(members)), 1), len(members) - 1)
        held.append(rng.choice(members, size=count, replace=False))
    validation = np.zeros(len(y), dtype=bool)
    validation[np.concatenate(held)] = True

    def part(mask: np.ndarray) -> _ContinuumDataset:
        index = np.flatnonzero(mask)
        return InMemoryDataset(
            x[index], y[index], None if t is None else t[index], data_type=dataset.data_type, train=dataset.train
        )

    return part(~validation), part(validation)


def build_tasks(train_scenario: ContinualScenario, test_scenario: ContinualScenario) -> list[TaskData]:
    """Materialize matching train and test scenarios into a list of `TaskData`. A test scenario
    of one task is every task's test set (one fixed test set, as CORe50's new-instances
    protocol has): the tasks share its tensors, read once."""
    shared = len(test_scenario) == 1
    if len(train_scenario) != len(test_scenario) and not shared:
        raise ValueError("train and test scenarios must have the same number of tasks, or the test one a single task")
    if shared:
        shared_test = materialize(test_scenario[0])
    tasks = []
    for task_id, train_set in enumerate(train_scenario):
        x_train, y_train = materialize(train_set)
        x_test, y_test = shared_test if shared else materialize(test_scenario[task_id])
        classes = sorted(set(torch.unique(y_train).tolist()) | set(torch.unique(y_test).tolist()))
        tasks.append(TaskData(task_id, x_train, y_train, x_test, y_test, classes))
    if len({tensor.dtype for task in tasks for tensor in (task.x_train, task.x_test)}) > 1:
        # tasks read by different paths: one dtype, so that they concatenate (streams, unions)
        converted_test = {id(task.x_test): float_inputs(task.x_test) for task in tasks}  # a shared one once
        for task in tasks:
            task.x_train, task.x_test = float_inputs(task.x_train), converted_test[id(task.x_test)]
    return tasks


def blur_tasks(tasks: list[TaskData], fraction: float, seed: int) -> list[TaskData]:
    """Blurry task boundaries: each class gives `fraction` of its training samples (drawn at
    random, rounded to a whole number) to the other tasks, each of those samples to one of them
    drawn uniformly, so that earlier tasks hold a few samples of later classes and later tasks a
    few of earlier ones. A task's training set is its own classes' remaining samples, then what
    it was given (settings shuffle within a task). Test sets and `classes` (the classes a task
    introduces, whose test samples it is scored on) do not change. At fraction (T - 1) / T for T
    tasks every class is spread evenly over the stream: the tasks no longer differ.

    The draws come from a stream of their own for `seed`, apart from the other seeded draws."""
    if fraction == 0 or len(tasks) < 2:
        return tasks
    owner: dict[int, int] = {}
    for task in tasks:
        for label in task.classes:
            if label in owner:
                raise ConfigurationError(
                    f"blurry task boundaries need tasks of distinct classes; class {label} is in tasks "
                    f"{owner[label]} and {task.task_id}"
                )
            owner[label] = task.task_id
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    nb_tasks = len(tasks)
    kept: list[np.ndarray] = []  # per task: the rows it keeps
    moved: list[tuple[np.ndarray, np.ndarray]] = []  # per task: (rows it gives, the task each goes to)
    for index, task in enumerate(tasks):
        labels = task.y_train.numpy()
        gives = np.zeros(len(labels), dtype=bool)
        for label in np.unique(labels):
            rows = np.flatnonzero(labels == label)
            gives[rng.choice(rows, size=int(round(fraction * len(rows))), replace=False)] = True
        given = np.flatnonzero(gives)
        others = rng.integers(0, nb_tasks - 1, size=len(given))
        kept.append(np.flatnonzero(~gives))
        moved.append((given, others + (others >= index)))  # other tasks only
    blurred = []
    for target, task in enumerate(tasks):
        own = torch.from_numpy(kept[target])
        x_parts, y_parts = [task.x_train[own]], [task.y_train[own]]
        for source, (given, destinations) in enumerate(moved):
            rows = torch.from_numpy(given[destinations == target])
            x_parts.append(tasks[source].x_train[rows])
            y_parts.append(tasks[source].y_train[rows])
        blurred.append(TaskData(task.task_id, torch.cat(x_parts), torch.cat(y_parts), task.x_test, task.y_test,
                                list(task.classes)))
    return blurred


def stream_dataset(tasks: list[TaskData], with_task_labels: bool, seed: int) -> TensorDataset:
    """The tasks' training samples as one stream: each task's in a random order drawn with
    `seed` and the task's id, tasks one after the other."""
    parts = []
    for task in tasks:
        generator = torch.Generator().manual_seed(seed * 1000 + task.task_id)
        order = torch.randperm(len(task.y_train), generator=generator)
        parts.append(task.train_dataset(with_task_labels, order).tensors)
    return TensorDataset(*(torch.cat(columns) for columns in zip(*parts)))
