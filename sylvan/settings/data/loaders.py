"""The loaders of the datasets sylvan downloads: through continuum's (torchvision's) download
code, from MNIST-format files read directly, or as file lists of image datasets; each with a
message naming where the files go when they are missing or damaged."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sylvan.errors import DataUnavailableError
from sylvan.settings.data.idx_files import DamagedIdxFile, read_mnist_split, split_labels_file

# continuum (and torchvision under it) is imported when data is loaded, not when the CLI starts.
Loader = Callable[[str, "int | None", int], "tuple[Any, Any]"]


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


@contextmanager
def no_empty_folders_left_on_failure(root: Path) -> Iterator[None]:
    """Run the body, which may make `root` and folders under it (torchvision makes
    `root/MNIST/raw` before it downloads); where it fails, remove the folders it made that are
    still empty (those two levels deep under `root`, `root` itself and the folders above it that
    did not exist), so that a failed load leaves the disk as it found it."""
    made_above = []
    folder = root
    while not folder.exists() and folder != folder.parent:
        made_above.append(folder)
        folder = folder.parent
    before = set(folders_below(root))
    try:
        yield
    except BaseException:
        for made in [*(f for f in folders_below(root) if f not in before), *made_above]:  # deepest first
            with suppress(OSError):  # not empty, or gone: left as it is
                made.rmdir()
        raise


def folders_below(root: Path) -> list[Path]:
    """The folders one and two levels under `root`, the deeper first."""
    if not root.is_dir():
        return []
    return [p for pattern in ("*/*", "*") for p in sorted(root.glob(pattern)) if p.is_dir() and not p.is_symlink()]


def torchvision_loader(class_name: str, name: str, hint: str) -> Loader:
    """Loader for continuum's dataset `class_name`, which downloads through torchvision."""

    def load(data_dir: str, size: int | None, seed: int):
        dataset_cls = getattr(importlib.import_module("continuum.datasets"), class_name)
        root = Path(data_dir).expanduser()
        download = downloads_allowed()
        try:
            with no_empty_folders_left_on_failure(root):
                root.mkdir(parents=True, exist_ok=True)
                return (
                    dataset_cls(str(root), train=True, download=download),
                    dataset_cls(str(root), train=False, download=download),
                )
        except (OSError, RuntimeError) as error:
            raise _unavailable(name, root, hint, download, error) from error

    return load


def mnist_format_loader(class_name: str, name: str, hint: str, classes: int = 10) -> Loader:
    """Loader for a dataset of the MNIST family (of `classes` classes), stored as IDX files under
    `data_dir/class_name/raw/`: read directly where the files are there (gzipped or not), through
    continuum's (torchvision's) download code otherwise. A file that cannot be read, or labels
    beyond the classes, are a damaged file, named."""
    download_loader = torchvision_loader(class_name, name, hint)

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


def image_files_loader(class_name: str, name: str, hint: str, required: tuple[str, ...], **options: Any) -> Loader:
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
            with no_empty_folders_left_on_failure(root), (
                    # continuum may print as it reads its file lists; its download progress is worth showing
                    contextlib.nullcontext() if download else contextlib.redirect_stdout(io.StringIO())):
                root.mkdir(parents=True, exist_ok=True)
                splits = (dataset_cls(str(root), train=True, download=download, **options),
                          dataset_cls(str(root), train=False, download=False, **options))
                return tuple(
                    InMemoryDataset(*split.get_data(), data_type=split.data_type, train=split.train)
                    for split in splits
                )
        except (OSError, RuntimeError, zipfile.BadZipFile) as error:
            raise _unavailable(name, root, hint, downloads_allowed(), error) from error

    return load


def omniglot_loader(name: str, hint: str) -> Loader:
    """Loader for Omniglot (Lake et al., Science 2015) as torchvision lays it out under
    `data_dir/omniglot-py/`: the 1,623 characters of its background and evaluation alphabets, in
    that order, each a class of 20 drawings, image files decoded by the setting. Omniglot has no
    split: the first half of each character's drawings (by file name) is the training set, the
    second half the test set. Downloaded through torchvision where a folder is missing."""

    def load(data_dir: str, size: int | None, seed: int):
        import numpy as np
        from continuum.datasets import InMemoryDataset
        from continuum.tasks import TaskType

        root = Path(data_dir).expanduser()
        folders = [root / "omniglot-py" / part for part in ("images_background", "images_evaluation")]
        if not all(folder.is_dir() for folder in folders):
            download = downloads_allowed()
            try:
                if not download:
                    raise FileNotFoundError(f"no {folders[0]} and {folders[1]}")
                from torchvision.datasets import Omniglot

                with no_empty_folders_left_on_failure(root):
                    root.mkdir(parents=True, exist_ok=True)
                    for background in (True, False):
                        Omniglot(str(root), background=background, download=True)
            except (OSError, RuntimeError) as error:
                raise _unavailable(name, root, hint, download, error) from error
        characters = [character for folder in folders for character in sorted(folder.glob("*/*"))
                      if character.is_dir()]
        paths, labels, training = [], [], []
        for label, character in enumerate(characters):
            drawings = sorted(character.glob("*.png"))
            paths += [str(path) for path in drawings]
            labels += [label] * len(drawings)
            training += [index < len(drawings) // 2 for index in range(len(drawings))]
        x, y, train = np.array(paths), np.array(labels), np.array(training, dtype=bool)
        return (InMemoryDataset(x[train], y[train], data_type=TaskType.IMAGE_PATH),
                InMemoryDataset(x[~train], y[~train], data_type=TaskType.IMAGE_PATH, train=False))

    return load
