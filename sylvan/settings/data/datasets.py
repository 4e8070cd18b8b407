"""The dataset registry: CLI name -> loader, input shape, number of classes, default backbone,
standard augmentation and per-channel statistics (with whether its benchmarks normalize by them).

Every loader returns continuum datasets (train, test), so that the settings build their task
streams with continuum's scenarios whatever the source. `digits` and `synthetic` live in memory
and need no download; the others use continuum's (torchvision's) download code under `data_dir`.
Datasets stored as image files (Tiny ImageNet, CORe50) come as in-memory datasets of paths,
decoded by the setting once it has chosen the samples it keeps.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sylvan.errors import ConfigurationError, DataUnavailableError, unknown_name
from sylvan.registry import NAME_RULE, is_command_line_name
from sylvan.settings.data.generated import digits_splits, random_cifar10_splits, synthetic_splits
from sylvan.settings.data.idx_files import DamagedIdxFile, read_mnist_split, split_labels_file

if TYPE_CHECKING:
    pass

# continuum (and torchvision under it) is imported when data is loaded, not when the CLI starts.
Loader = Callable[[str, "int | None", int], "tuple[Any, Any]"]


@dataclass(frozen=True)
class DatasetSpec:
    """What a setting needs to know about a dataset before loading it."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    default_backbone: str
    load: Loader
    downloads: bool = False
    files_hint: str = ""
    augmentation: str = "none"  # the standard training augmentation of its benchmarks (settings/augmentation.py)
    # per-channel mean and standard deviation of its training images in [0, 1], where known
    channel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    normalized: bool = False  # its benchmarks normalize inputs by `channel_stats` (CIFAR in DER, ER-ACE, ...)
    # domains of its own that its training samples' task labels (t, 0 to domains - 1) number, in the
    # order they come (CORe50: its 8 training sessions); 0: none. Its test set is then one fixed set.
    domains: int = 0
    image_files: bool = False  # stored as image files, decoded when loaded (so `--image_cache` applies)
    resized: bool = False  # its image files are of many sizes, each resized to `input_shape` when decoded


def downloads_allowed() -> bool:
    """False when SYLVAN_OFFLINE is set: datasets must then already be on disk."""
    return os.environ.get("SYLVAN_OFFLINE", "").lower() not in ("1", "true", "yes")


def _unavailable(name: str, root: Path, hint: str, download: bool, error: Exception) -> DataUnavailableError:
    """The message for dataset `name` missing from `root`: where its files go (`hint`); the
    download's error where one was tried (offline, the loader's own text would suggest its
    `download=True`, which is sylvan's to pass)."""
    where = f"Put the files at {root}/{hint}, or pass --data_dir pointing to a folder that holds them"
    if not download:
        reason = "" if "download=True" in str(error) else f" ({error})"  # the loader's advice is not the user's
        return DataUnavailableError(
            f"dataset {name!r} is not in {root}{reason}, and downloads are off (SYLVAN_OFFLINE is set). {where}, "
            "or unset SYLVAN_OFFLINE to download it"
        )
    return DataUnavailableError(
        f"dataset {name!r} is not in {root} and could not be downloaded ({error}). {where}, or run once with "
        "network access."
    )


def _damaged(name: str, path: Path, problem: str) -> DataUnavailableError:
    """The message for a file of dataset `name` that is there but cannot be what it should be."""
    return DataUnavailableError(
        f"dataset {name!r}: {path} is damaged ({problem}). Delete it, so that it is downloaded again, or put an "
        "intact copy in its place"
    )


def _torchvision(class_name: str, name: str, hint: str) -> Loader:
    """Loader for continuum's dataset `class_name`, which downloads through torchvision."""

    def load(data_dir: str, size: int | None, seed: int):
        dataset_cls = getattr(importlib.import_module("continuum.datasets"), class_name)
        root = Path(data_dir).expanduser()
        download = downloads_allowed()
        try:
            root.mkdir(parents=True, exist_ok=True)
            return (
                dataset_cls(str(root), train=True, download=download),
                dataset_cls(str(root), train=False, download=download),
            )
        except (OSError, RuntimeError) as error:
            raise _unavailable(name, root, hint, download, error) from error

    return load


def _mnist_format(class_name: str, name: str, hint: str, classes: int = 10) -> Loader:
    """Loader for a dataset of the MNIST family (of `classes` classes), stored as IDX files under
    `data_dir/class_name/raw/`: read directly where the files are there (gzipped or not), through
    continuum's (torchvision's) download code otherwise. A file that cannot be read, or labels
    beyond the classes, are a damaged file, named."""
    download_loader = _torchvision(class_name, name, hint)

    def load(data_dir: str, size: int | None, seed: int):
        folder = Path(data_dir).expanduser() / class_name / "raw"
        splits = []
        for train in (True, False):
            try:
                split = read_mnist_split(folder, train)
            except DamagedIdxFile as error:
                raise _damaged(name, error.path, error.problem) from error
            if split is not None:
                outside = split[1][(split[1] < 0) | (split[1] >= classes)]
                if len(outside):
                    raise _damaged(name, split_labels_file(folder, train),
                                   f"label {int(outside[0])}, where {name} has {classes} classes, 0 to {classes - 1}")
            splits.append(split)
        if any(split is None for split in splits):
            return download_loader(data_dir, size, seed)
        from continuum.datasets import InMemoryDataset

        (x_train, y_train), (x_test, y_test) = splits
        return InMemoryDataset(x_train, y_train), InMemoryDataset(x_test, y_test, train=False)

    return load


def _image_files(class_name: str, name: str, hint: str, required: tuple[str, ...], **options: Any) -> Loader:
    """Loader for continuum's dataset `class_name` (built with `options`), stored as image files
    under `data_dir`: its file lists are read once, into in-memory datasets of image paths that
    the setting subsamples, then decodes (`decoding.decode_images`). The archive is downloaded
    only when one of the `required` paths is missing."""

    def load(data_dir: str, size: int | None, seed: int):
        import contextlib
        import io
        import zipfile

        from continuum.datasets import InMemoryDataset

        dataset_cls = getattr(importlib.import_module("continuum.datasets"), class_name)
        root = Path(data_dir).expanduser()
        download = downloads_allowed() and not all((root / path).exists() for path in required)
        try:
            root.mkdir(parents=True, exist_ok=True)
            # continuum may print as it reads its file lists; its download progress is worth showing
            with contextlib.nullcontext() if download else contextlib.redirect_stdout(io.StringIO()):
                splits = (dataset_cls(str(root), train=True, download=download, **options),
                          dataset_cls(str(root), train=False, download=False, **options))
                return tuple(
                    InMemoryDataset(*split.get_data(), data_type=split.data_type, train=split.train)
                    for split in splits
                )
        except (OSError, RuntimeError, zipfile.BadZipFile) as error:
            raise _unavailable(name, root, hint, downloads_allowed(), error) from error

    return load


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("digits", (1, 8, 8), 10, "mlp", digits_splits),
        DatasetSpec("synthetic", (1, 8, 8), 10, "mlp", synthetic_splits),
        DatasetSpec(
            "mnist", (1, 28, 28), 10, "mlp",
            _mnist_format("MNIST", "mnist", "MNIST/raw/*-ubyte.gz"), downloads=True,
            channel_stats=((0.1307,), (0.3081,)),
        ),
        DatasetSpec(
            "fashion_mnist", (1, 28, 28), 10, "mlp",
            _mnist_format("FashionMNIST", "fashion_mnist", "FashionMNIST/raw/*-ubyte.gz"),
            downloads=True, channel_stats=((0.2860,), (0.3530,)),
        ),
        DatasetSpec(
            # the Street View House Numbers (Netzer et al., 2011): 73,257 training and 26,032 test
            # digits in colour, as torchvision reads its .mat files
            "svhn", (3, 32, 32), 10, "resnet18",
            _torchvision("SVHN", "svhn", "train_32x32.mat and test_32x32.mat"), downloads=True,
            channel_stats=((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
        ),
        DatasetSpec(
            # the Describable Textures Dataset (Cimpoi et al., CVPR 2014): 47 textures, its first
            # split's training and validation images (80 per class) for training and its test
            # images (40) for testing; images of many sizes, each resized to 32x32 as CTrL does
            "dtd", (3, 32, 32), 47, "resnet18",
            _image_files("DTD", "dtd", "dtd/images/ and dtd/labels/", ("dtd",)),
            downloads=True, image_files=True, resized=True,
        ),
        DatasetSpec(
            "cifar10", (3, 32, 32), 10, "resnet18",
            _torchvision("CIFAR10", "cifar10", "cifar-10-batches-py/"), downloads=True, augmentation="crop_flip",
            channel_stats=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2615)), normalized=True,
        ),
        DatasetSpec(
            # CIFAR-10's shape, size (50,000 + 10,000), labels and pipeline, random pixels: runs the
            # Seq-CIFAR-10 pipeline with nothing to download (speed checks; accuracy is chance)
            "random_cifar10", (3, 32, 32), 10, "resnet18", random_cifar10_splits, augmentation="crop_flip",
            channel_stats=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2615)), normalized=True,
        ),
        DatasetSpec(
            "cifar100", (3, 32, 32), 100, "resnet18",
            _torchvision("CIFAR100", "cifar100", "cifar-100-python/"), downloads=True, augmentation="crop_flip",
            channel_stats=((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)), normalized=True,
        ),
        DatasetSpec(
            # 200 classes of 500 training and 50 test images (the official validation set, as in the
            # rehearsal papers)
            "tiny_imagenet", (3, 64, 64), 200, "resnet18",
            _image_files(
                "TinyImageNet200", "tiny_imagenet",
                "tiny-imagenet-200/ (wnids.txt, train/WNID/images/, val/images/, val/val_annotations.txt)",
                ("tiny-imagenet-200",),
            ),
            downloads=True, augmentation="crop_flip", image_files=True,
            channel_stats=((0.4802, 0.4480, 0.3975), (0.2770, 0.2691, 0.2821)), normalized=True,
        ),
        DatasetSpec(
            # CORe50 (Lomonaco & Maltoni, CoRL 2017): 50 objects (the classes) filmed in 11 sessions,
            # with the official split (sessions 3, 7 and 10 for testing, as core50_train.csv lists);
            # its class-incremental protocol (NC) is --initial_classes 10 --nb_tasks 9, its
            # new-instances protocol (NI) the 8 training sessions as domains: domain_incremental
            # --domain_shift dataset --nb_tasks 8
            "core50", (3, 128, 128), 50, "resnet18",
            _image_files(
                "Core50", "core50",
                "core50_128x128/ (s1/ to s11/, each with o1/ to o50/ of PNG files) and core50_train.csv",
                ("core50_128x128", "core50_train.csv"), scenario="domains", classification="object",
            ),
            downloads=True, domains=8, image_files=True,
        ),
    )
}


BUILT_IN_DATASETS = frozenset(DATASETS)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Make `spec` selectable as `--dataset spec.name` (from a plugin: see `image_folders` for a
    folder of one's own images). Registering a name again replaces the earlier spec; a
    built-in dataset's name is refused, and so is one that is not a word (`is_command_line_name`)."""
    if not is_command_line_name(spec.name):
        raise ConfigurationError(
            f"dataset name {spec.name!r}: it is given as --dataset NAME, so it must be {NAME_RULE}, "
            "such as 'my_dataset'"
        )
    if spec.name in BUILT_IN_DATASETS:
        raise ConfigurationError(f"dataset {spec.name!r} is built in; register yours under another name")
    DATASETS[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """The spec registered as `name`, or a clear error listing the valid names."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, list(DATASETS))
    return DATASETS[name]
