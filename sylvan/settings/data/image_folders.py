"""A researcher's own images as a sylvan dataset: a folder with `train/` and `test/`, each holding
one sub-folder of image files per class (torchvision's `ImageFolder` layout):

    ROOT/train/CLASS_A/*.png, ROOT/train/CLASS_B/*.jpg, ...
    ROOT/test/CLASS_A/*.png, ...

Classes are numbered in the sorted order of their folders' names, in both splits alike (so the
two must hold the same classes). Every image is read as RGB, as continuum reads image files, and
all must have the size of the first: the input shape is known from that one file when the
dataset is registered, before anything else is read. A plugin registers it in one line, then
`--dataset NAME` selects it on every supervised setting:

    register_dataset(image_folder_dataset("flowers", "/data/flowers", augmentation="crop_flip"))
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sylvan.errors import ConfigurationError, DataUnavailableError
from sylvan.settings.data.augmentation import AUGMENTATIONS
from sylvan.settings.data.datasets import DatasetSpec

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")


def class_folders(split: Path) -> list[str]:
    """The names of the class folders of one split, sorted; a clear error when there are none."""
    if not split.is_dir():
        raise DataUnavailableError(f"{split} is not a folder: an image-folder dataset needs train/ and test/ folders")
    classes = sorted(entry.name for entry in os.scandir(split) if entry.is_dir())
    if not classes:
        raise DataUnavailableError(f"{split} holds no class folders (one folder of images per class)")
    return classes


def image_files(folder: Path) -> list[str]:
    """The image files under `folder` (at any depth), in sorted order."""
    found = []
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        subdirectories.sort()
        found += [os.path.join(directory, name) for name in sorted(files) if name.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def list_split(split: Path, classes: list[str], name: str):
    """A continuum dataset of the image paths of one split, labelled by class position."""
    from continuum.datasets import InMemoryDataset
    from continuum.tasks import TaskType

    paths: list[str] = []
    labels: list[int] = []
    for label, class_name in enumerate(classes):
        files = image_files(split / class_name)
        if not files:
            raise DataUnavailableError(f"dataset {name!r}: {split / class_name} holds no image files")
        paths += files
        labels += [label] * len(files)
    return InMemoryDataset(
        np.array(paths), np.array(labels, dtype=np.int64), data_type=TaskType.IMAGE_PATH, train=split.name == "train"
    )


def image_folder_dataset(
    name: str,
    root: str | os.PathLike[str],
    *,
    backbone: str | None = None,
    augmentation: str = "none",
    channel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    normalize: bool = False,
) -> DatasetSpec:
    """The spec of the image-folder dataset at `root`, named `name`. Its default backbone is
    `backbone`, else the CIFAR ResNet-18 for images of at least 32 pixels a side and the MLP for
    smaller ones; `augmentation` is its standard training augmentation (`none` or `crop_flip`);
    `channel_stats` = (means, stds) of its RGB channels in [0, 1], by which the network
    normalizes its inputs when `normalize` (or `--normalize_inputs true`) asks for it."""
    from PIL import Image

    root = Path(root).expanduser()
    if augmentation not in AUGMENTATIONS:
        raise ConfigurationError(f"dataset {name!r}: augmentation must be one of {', '.join(AUGMENTATIONS)}, "
                                 f"got {augmentation!r}")
    if normalize and channel_stats is None:
        raise ConfigurationError(f"dataset {name!r}: normalize=True needs channel_stats (means, stds)")
    classes = {split: class_folders(root / split) for split in SPLITS}
    if classes["train"] != classes["test"]:
        only_train = sorted(set(classes["train"]) - set(classes["test"]))
        only_test = sorted(set(classes["test"]) - set(classes["train"]))
        raise DataUnavailableError(
            f"dataset {name!r}: train/ and test/ must hold the same class folders (labels follow their sorted "
            f"names); only in train/: {only_train or 'none'}; only in test/: {only_test or 'none'}"
        )
    first = next((files[0] for files in (image_files(root / "train" / c) for c in classes["train"]) if files), None)
    if first is None:
        raise DataUnavailableError(f"dataset {name!r}: {root / 'train'} holds no image files")
    try:
        with Image.open(first) as image:
            width, height = image.size
    except OSError as error:
        raise DataUnavailableError(f"dataset {name!r}: cannot read {first} ({error})") from error

    def load(data_dir: str, size: int | None, seed: int):
        return tuple(list_split(root / split, classes[split], name) for split in SPLITS)

    return DatasetSpec(
        name, (3, height, width), len(classes["train"]),
        backbone or ("resnet18" if min(height, width) >= 32 else "mlp"), load,
        augmentation=augmentation, channel_stats=channel_stats, normalized=normalize, image_files=True,
    )
