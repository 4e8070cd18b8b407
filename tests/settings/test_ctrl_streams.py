"""The CTrL streams (`--stream s_minus`, ... and their offline versions): task sizes, the task that
returns and how it returns, the 100 tasks of S_long, and both versions of one structure."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from sylvan.methods import METHODS
from sylvan.settings import DatasetStreamSetting
from sylvan.settings.data import ctrl_streams, dataset_streams
from sylvan.settings.data.datasets import DATASETS, DatasetSpec
from sylvan.settings.data.generated import make_synthetic
from sylvan.settings.dataset_stream import planned_stream

OFFLINE = [name + "_offline" for name in ctrl_streams.STREAMS]
SHORT = ["s_minus", "s_plus", "s_in", "s_out"]  # the streams whose last task is the first one's, changed


def plan(name: str) -> list[dataset_streams.TaskPlan]:
    return list(planned_stream(name, None, "digits", 0))


@pytest.mark.parametrize(("name", "sizes"), [
    ("s_minus", [600, 60, 60, 60, 60, 60]),
    ("s_plus", [60, 60, 60, 60, 60, 600]),
    ("s_in", [600, 60, 60, 60, 60, 8]),
    ("s_out", [600, 60, 60, 60, 60, 60]),
    ("s_pl", [60, 60, 60, 60, 600]),
])
@pytest.mark.parametrize("version", ["", "_offline"])
def test_each_short_stream_has_ctrls_task_sizes_and_ten_classes_per_task(name, sizes, version):
    tasks = plan(name + version)
    assert [task.samples_per_class for task in tasks] == sizes  # training and validation samples together
    assert all(len(task.classes) == 10 for task in tasks)


@pytest.mark.parametrize("name", SHORT)
@pytest.mark.parametrize("version", ["", "_offline"])
def test_the_last_task_is_the_first_one_come_back_changed_in_one_way(name, version):
    first, *middle, last = plan(name + version)
    assert last.dataset == first.dataset and sorted(last.classes) == sorted(first.classes)
    assert all((task.dataset, task.transformation, task.parameter)
               != (first.dataset, first.transformation, first.parameter) for task in middle)  # none in between
    same_input = (last.transformation, last.parameter) == (first.transformation, first.parameter)
    changes = {"samples": last.samples_per_class != first.samples_per_class,
               "input": not same_input, "labels": last.classes != first.classes}
    expected = {"s_minus": {"samples"}, "s_plus": {"samples"}, "s_in": {"samples", "input"},
                "s_out": {"samples", "labels"}}
    assert {change for change, happened in changes.items() if happened} == expected[name]
    if name == "s_out":
        assert last.classes == (9, 0, 1, 2, 3, 4, 5, 6, 7, 8)
    if name == "s_in":
        assert first.transformation == last.transformation == "recolour"  # a background in both


def test_the_distractors_are_five_distinct_problems_in_each_version():
    for version in ("", "_offline"):
        problems = [(task.dataset, task.transformation, task.parameter) for task in plan("s_pl" + version)]
        assert len(set(problems)) == 5, problems


def test_s_long_has_100_tasks_of_5_classes_shrinking_as_ctrl_schedules_them():
    tasks = plan("s_long_offline")
    assert len(tasks) == 100 and all(len(task.classes) == len(set(task.classes)) == 5 for task in tasks)
    large = [task.samples_per_class == 1500 for task in tasks]
    assert all(task.samples_per_class in (1500, 8) for task in tasks)
    assert 5 <= sum(large[:20]) <= 15 and 1 <= sum(large[20:40]) <= 10 and not any(large[40:])
    assert sum(large[:20]) > sum(large[20:40])
    paper = plan("s_long")
    assert [task.samples_per_class for task in paper] == [task.samples_per_class for task in tasks]
    assert Counter(task.dataset for task in paper).keys() == {"mnist", "svhn", "cifar10", "fashion_mnist", "cifar100"}
    assert max(max(task.classes) for task in paper if task.dataset == "cifar100") >= 10  # its 100 classes
    assert plan("s_long") == paper  # one fixed stream


def test_the_offline_versions_need_no_download_but_mnist_and_the_paper_ones_use_the_papers_datasets():
    offline = {task.dataset for name in OFFLINE for task in plan(name)}
    assert offline == {"mnist", "digits", "synthetic"}
    paper = {task.dataset for name in ctrl_streams.STREAMS for task in plan(name)}
    assert paper == {"cifar10", "mnist", "dtd", "fashion_mnist", "svhn", "cifar100"}
    assert all(not DATASETS[name].downloads or name == "mnist" for name in offline)


def stand_in_load(name: str):
    """Any dataset as 10 classes of synthetic 8x8 images, 1,000 training samples per class."""
    return make_synthetic(10_000, seed={"mnist": 0, "digits": 1, "synthetic": 2}[name])


@pytest.mark.parametrize("name", ["s_out_offline", "s_in_offline", "s_minus_offline"])
def test_built_tasks_have_the_planned_sizes_and_the_returning_task_its_change(name):
    plans = plan(name)
    tasks = dataset_streams.build_tasks(plans, stand_in_load, (1, 8, 8), seed=0)
    for task, planned in zip(tasks, plans):
        counts = Counter(task.y_train.tolist())
        assert len(counts) == 10 and set(counts.values()) == {planned.samples_per_class}
    first, last = tasks[0], tasks[-1]
    if name == "s_out_offline":  # the same test images, label k now naming the first task's class k - 1 (mod 10)
        for label in range(10):
            assert torch.equal(last.x_test[last.y_test == last.classes[label]],
                               first.x_test[first.y_test == first.classes[(label - 1) % 10]])
    elif name == "s_in_offline":  # the same digits on another background
        assert torch.equal(first.y_test - first.classes[0], last.y_test - last.classes[0])
        assert not torch.equal(first.x_test, last.x_test)
    else:
        assert torch.equal(first.x_test, last.x_test)


def test_an_offline_ctrl_stream_runs_end_to_end_with_its_forward_transfer(mnist_root):
    setting = DatasetStreamSetting(stream="s_minus_offline", data_dir=str(mnist_root), epochs=1, progress_bar=False)
    assert setting.nb_tasks == 6 and setting.input_shape == (1, 28, 28) and setting.num_classes == 60
    results = setting.apply(METHODS["naive"]())
    assert results.complete and len(results.independent_accuracies) == 6
    assert results.accuracy_matrix[-1][0] is not None


def test_a_stream_reads_a_dataset_of_image_files_of_many_sizes_resized(tmp_path):
    from continuum.datasets import InMemoryDataset
    from continuum.tasks import TaskType

    paths, labels = [], []
    for index in range(12):
        path = tmp_path / f"{index}.png"
        side = 5 + index  # every image of another size
        Image.fromarray(np.full((side, side + 1, 3), 20 * index, dtype=np.uint8)).save(path)
        paths.append(str(path))
        labels.append(index % 2)

    def load(data_dir, size, seed):
        split = np.array(paths), np.array(labels)
        return (InMemoryDataset(*split, data_type=TaskType.IMAGE_PATH),
                InMemoryDataset(*split, data_type=TaskType.IMAGE_PATH, train=False))

    DATASETS["textures_test"] = DatasetSpec("textures_test", (3, 8, 8), 2, "resnet18", load, image_files=True,
                                            resized=True)
    try:
        setting = DatasetStreamSetting(stream="textures_test,digits", forward_transfer=False, progress_bar=False)
        texture = setting.prepare_tasks()[0]
    finally:
        del DATASETS["textures_test"]
    assert texture.x_train.shape == (12, 3, 8, 8) and texture.x_train.dtype == torch.uint8
    assert texture.x_train[3].unique().tolist() == [60]  # each image read, resized, its grey kept
