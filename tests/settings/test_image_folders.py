"""A folder of one's own images (train/ and test/, a folder per class) registered as a dataset."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sylvan.errors import ConfigurationError, DataUnavailableError
from sylvan.minibatches import float_inputs
from sylvan.settings import DATASETS, ClassIncrementalSetting, image_folder_dataset, register_dataset
from tests.conftest import REPO

CLASSES = ("cat", "ant", "dog", "bee")  # numbered in sorted order: ant 0, bee 1, cat 2, dog 3


def write_image_folder(root: Path, side: int = 12, per_class: dict[str, int] | None = None,
                       classes: tuple[str, ...] = CLASSES) -> Path:
    """ROOT/{train,test}/CLASS/*.png of side x side RGB images whose red channel is 20 * label
    (label in sorted order) and the rest noise; one greyscale training image of `bee`, and one
    image in a nested folder of `ant`."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, name in enumerate(sorted(classes)):
            folder = root / split / name
            (folder / "nested").mkdir(parents=True)
            for index in range((per_class or {}).get(name, 6 if split == "train" else 3)):
                pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
                pixels[..., 0] = 20 * label
                image = Image.fromarray(pixels)
                if split == "train" and name == "bee" and index == 0:
                    image = image.convert("L")
                target = folder / "nested" if name == "ant" and index == 0 else folder
                image.save(target / f"{index}.png")
            (folder / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "mine")


@pytest.fixture(autouse=True)
def forget_registered_datasets():
    before = dict(DATASETS)
    yield
    DATASETS.clear()
    DATASETS.update(before)


def test_the_spec_is_read_from_the_folder(folder):
    spec = register_dataset(image_folder_dataset("mine", folder))
    assert DATASETS["mine"] is spec
    assert (spec.input_shape, spec.num_classes, spec.default_backbone) == ((3, 12, 12), 4, "mlp")
    assert (spec.augmentation, spec.channel_stats, spec.normalized) == ("none", None, False)
    big = write_image_folder(folder.parent / "big", side=32)
    stats = ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    spec = image_folder_dataset("big", big, augmentation="crop_flip", channel_stats=stats, normalize=True)
    assert (spec.input_shape, spec.default_backbone, spec.augmentation, spec.normalized) == (
        (3, 32, 32), "resnet18", "crop_flip", True
    )


def test_tasks_hold_every_image_labelled_by_its_sorted_class_folder(folder):
    register_dataset(image_folder_dataset("mine", folder))
    tasks = ClassIncrementalSetting(dataset="mine", nb_tasks=2, progress_bar=False).prepare_tasks()
    assert [task.classes for task in tasks] == [[0, 1], [2, 3]]
    assert sum(len(task.y_train) for task in tasks) == 4 * 6 and sum(len(task.y_test) for task in tasks) == 4 * 3
    for task in tasks:
        for x, y in ((task.x_train, task.y_train), (task.x_test, task.y_test)):
            inputs = float_inputs(x)
            assert inputs.shape[1:] == (3, 12, 12)
            # the red channel tells the label, except in the greyscale image, where all channels agree
            coloured = ~(inputs[:, 0] == inputs[:, 1]).all(dim=(1, 2))
            assert torch.equal(inputs[coloured, 0, 0, 0], (20 * y[coloured]).float() / 255)
    assert sum(int((~(float_inputs(t.x_train)[:, 0] == float_inputs(t.x_train)[:, 1]).all(dim=(1, 2))).sum())
               for t in tasks) == 4 * 6 - 1


def test_mistakes_in_the_folder_are_refused_with_what_to_fix(tmp_path, folder):
    with pytest.raises(DataUnavailableError, match="is not a folder"):
        image_folder_dataset("mine", tmp_path / "absent")
    uneven = write_image_folder(tmp_path / "uneven", classes=("a", "b", "c"))
    (uneven / "test" / "c").rename(uneven / "test" / "d")
    with pytest.raises(DataUnavailableError, match=r"only in train/: \['c'\]; only in test/: \['d'\]"):
        image_folder_dataset("uneven", uneven)
    with pytest.raises(ConfigurationError, match="augmentation must be one of"):
        image_folder_dataset("mine", folder, augmentation="mixup")
    with pytest.raises(ConfigurationError, match="needs channel_stats"):
        image_folder_dataset("mine", folder, normalize=True)
    with pytest.raises(ConfigurationError, match="'mnist' is built in"):
        register_dataset(image_folder_dataset("mnist", folder))
    for name in ("my flowers", "-flowers", 7):
        with pytest.raises(ConfigurationError, match=rf"dataset name {re.escape(repr(name))}: it is given as"):
            register_dataset(image_folder_dataset(name, folder))
        assert name not in DATASETS
    register_dataset(image_folder_dataset("mine", folder))
    for image in (folder / "test" / "dog").glob("*.png"):
        image.unlink()
    with pytest.raises(DataUnavailableError, match=r"dog holds no image files"):
        ClassIncrementalSetting(dataset="mine", nb_tasks=2, progress_bar=False).prepare_tasks()


def test_a_plugin_registers_it_for_the_command_line(folder, tmp_path):
    plugin = tmp_path / "my_data.py"
    plugin.write_text(
        "from sylvan.settings import image_folder_dataset, register_dataset\n"
        f"register_dataset(image_folder_dataset('mine', {str(folder)!r}))\n"
    )
    command = [sys.executable, str(REPO / "cli.py"), "--plugin", str(plugin), "--setting", "class_incremental",
               "--method", "rehearsal", "--dataset", "mine", "--nb_tasks", "2", "--epochs", "1",
               "--results_dir", str(tmp_path / "results"), "--run_name", "run", "--accelerator", "cpu"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "results" / "run" / "results.json").read_text())
    assert len(results["accuracy_matrix"]) == 2 and results["samples_seen"] == [12, 12]
    assert str(plugin) in (tmp_path / "results" / "run" / "config.yaml").read_text()
