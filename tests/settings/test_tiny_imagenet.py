"""Tiny ImageNet, read from its folder as the official archive unpacks it (here a generated copy
with the real layout: 200 classes, 64x64 JPEG files, one of them greyscale; the benchmark
`benchmarks/image_files.py` writes it)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sylvan.errors import DataUnavailableError
from sylvan.methods import Rehearsal
from sylvan.minibatches import float_inputs
from sylvan.run.experiment import RunOptions, run_experiment
from sylvan.settings import ClassIncrementalSetting
from sylvan.settings.data.decoding import decode_images, materialize_per_sample

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from image_files import write_tiny_imagenet  # noqa: E402

TRAIN_PER_CLASS, TEST_PER_CLASS = 3, 1


@pytest.fixture(scope="module")
def tiny_imagenet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny ImageNet's layout, 200 classes, 3 training and 1 test image each; the first training
    image of class 1 in greyscale, as a few of the real ones are."""
    return write_tiny_imagenet(
        tmp_path_factory.mktemp("data"), train_per_class=TRAIN_PER_CLASS, test_per_class=TEST_PER_CLASS,
        greyscale=(1, 0),
    )


def tiny_imagenet_setting(root: Path, **options) -> ClassIncrementalSetting:
    return ClassIncrementalSetting(
        dataset="tiny_imagenet", data_dir=str(root), nb_tasks=10, progress_bar=False, **options
    )


def test_tasks_hold_the_images_as_continuum_reads_them_file_by_file(tiny_imagenet_root, monkeypatch):
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    tasks = tiny_imagenet_setting(tiny_imagenet_root).prepare_tasks()
    assert len(tasks) == 10 and [len(task.classes) for task in tasks] == [20] * 10
    assert sum(len(task.y_train) for task in tasks) == 200 * TRAIN_PER_CLASS
    assert sum(len(task.y_test) for task in tasks) == 200 * TEST_PER_CLASS
    assert tasks[0].x_train.shape[1:] == (3, 64, 64) and tasks[0].x_train.dtype == torch.uint8  # pixels

    from continuum.datasets import TinyImageNet200
    from continuum.scenarios import ClassIncremental

    for train in (True, False):
        by_file = ClassIncremental(TinyImageNet200(str(tiny_imagenet_root), train=train, download=False), nb_tasks=10)
        for task, taskset in zip(tasks[:3], by_file):  # the greyscale image is in the first
            x, y = materialize_per_sample(taskset)
            assert torch.equal(float_inputs(task.x_train if train else task.x_test), x)
            assert torch.equal(task.y_train if train else task.y_test, y)

    greyscale = tasks[0].x_train[tasks[0].y_train == 1][0]
    assert torch.equal(greyscale[0], greyscale[1]) and torch.equal(greyscale[0], greyscale[2])


def test_only_the_kept_training_images_are_read(tiny_imagenet_root, monkeypatch):
    """With --train_samples the paths are subsampled before any file is opened."""
    import PIL.Image

    opened: list[str] = []
    original_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda path, *args, **kw: opened.append(str(path)) or original_open(path))
    tasks = tiny_imagenet_setting(tiny_imagenet_root, train_samples=400).prepare_tasks()
    assert sum(len(task.y_train) for task in tasks) == 400
    assert len(opened) == 400 + 200 * TEST_PER_CLASS


def test_missing_folder_offline_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match=r"tiny-imagenet-200/ \(wnids.txt"):
        tiny_imagenet_setting(tmp_path).prepare_tasks()


def test_an_unreadable_file_or_an_image_of_another_size_is_refused(tmp_path):
    from continuum.datasets import InMemoryDataset
    from continuum.tasks import TaskType

    paths = []
    for index, side in enumerate((64, 64, 32)):
        paths.append(str(tmp_path / f"{index}.png"))
        Image.new("RGB", (side, side)).save(paths[-1])
    dataset = InMemoryDataset(np.array(paths), np.zeros(3, dtype=np.int64), data_type=TaskType.IMAGE_PATH)
    with pytest.raises(DataUnavailableError, match=r"2\.png is 32x32 pixels but .*0\.png is 64x64"):
        decode_images(dataset, "'tiny_imagenet'", threads=2)
    Path(paths[1]).write_bytes(b"not an image")
    with pytest.raises(DataUnavailableError, match=r"cannot read .*1\.png"):
        decode_images(dataset, "'tiny_imagenet'", threads=2)
    empty = InMemoryDataset(np.array([], dtype=str), np.zeros(0, dtype=np.int64), data_type=TaskType.IMAGE_PATH)
    with pytest.raises(DataUnavailableError, match="name no images"):
        decode_images(empty, "'tiny_imagenet'")


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_any_number_of_threads_decodes_the_same_array(tiny_imagenet_root, threads):
    from continuum.datasets import TinyImageNet200

    dataset = TinyImageNet200(str(tiny_imagenet_root), train=False, download=False)
    paths, labels, _ = dataset.get_data()
    x, y, _ = decode_images(dataset, threads=threads).get_data()
    assert x.shape == (len(paths), 64, 64, 3) and np.array_equal(y, labels)
    for index in (0, 1, len(paths) // 2, len(paths) - 1):
        assert np.array_equal(x[index], np.asarray(Image.open(paths[index]).convert("RGB")))


def test_rehearsal_runs_on_it_with_a_resnet_its_augmentation_and_normalization(
    tiny_imagenet_root, tmp_path, monkeypatch
):
    """The default backbone is the ResNet-18 of CIFAR (its global pooling takes 64x64 inputs);
    its reduced width here keeps the run to seconds on a CPU."""
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    setting = ClassIncrementalSetting(
        dataset="tiny_imagenet", data_dir=str(tiny_imagenet_root), nb_tasks=2, epochs=1, batch_size=32,
        train_samples=200, progress_bar=False, accelerator="cpu",
    )
    assert setting.resolved_augmentation == "crop_flip" and setting.input_normalization() is not None
    method = Rehearsal(buffer_size=50, backbone="resnet18_reduced")
    results = run_experiment(setting, method, RunOptions(results_dir=str(tmp_path)))
    assert np.asarray(results.accuracy_matrix).shape == (2, 2)
    assert results.samples_seen == [100, 100]
    assert len(method.buffer) == 50


def test_decoding_uses_the_cores_the_process_is_bound_to(monkeypatch):
    """On a cluster node a job is bound to some cores: one thread for each of those, not one for
    each core of the machine."""
    import os

    from sylvan.settings.data.decoding import usable_cores

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5, 6}, raising=False)
    assert usable_cores() == 3
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert usable_cores() == 7
