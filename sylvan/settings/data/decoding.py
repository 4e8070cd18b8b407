"""Reading continuum task sets into tensors, and decoding datasets of image files.

Continuum applies its transformations (tensor conversion, permutations, rotations) per sample
when a task set is indexed. uint8 image arrays whose transformations are tensor conversion,
fixed rotations and pixel permutations are built whole (`images_at_once`) and kept as uint8
pixels, made float per minibatch (`sylvan.minibatches.float_inputs`) to the same values;
anything else goes through the task set's own indexing, sample by sample, to float32. Datasets
of image files are first decoded into uint8 arrays (`decode_images`), optionally kept in a cache
folder (`image_cache`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader

from sylvan.errors import DataUnavailableError
from sylvan.settings.data import image_cache
from sylvan.settings.data.array_transforms import ArrayTransform

if TYPE_CHECKING:
    from continuum.datasets.base import _ContinuumDataset


def materialize(taskset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a continuum task set once into (inputs, labels as int64): inputs as uint8 pixels
    where the task set is made of uint8 images (`images_at_once`), as float32 otherwise."""
    converted = images_at_once(taskset)
    if converted is None:
        return materialize_per_sample(taskset)
    # the per-sample path's loader draws its base seed from torch's global generator, which later
    # initializes the model: draw the same, so that a seed's run is the same on either path
    torch.empty((), dtype=torch.int64).random_()
    return converted


def materialize_per_sample(taskset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """`materialize` through the task set's own indexing: its transformations, sample by sample."""
    loader = DataLoader(taskset, batch_size=4096, shuffle=False, num_workers=0)
    xs, ys = [], []
    for batch in loader:
        xs.append(batch[0].float())
        ys.append(batch[1].long())
    return torch.cat(xs), torch.cat(ys)


def images_at_once(taskset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`materialize` for the common case of uint8 image arrays (the MNIST family, CIFAR, Tiny
    ImageNet) whose transformation is `ToTensor`, optionally preceded by continuum's fixed-angle
    rotations (rotated MNIST) and followed by its pixel permutations (permuted MNIST): the same
    operations on the whole array at once (`ArrayTransform`), kept as uint8 pixels, a quarter of
    float32's memory. `float_inputs` divides them by 255 when a minibatch is drawn, which gives
    the float32 values that a PIL image and the transformations per sample give. None for any
    other task set (other transformations or dtypes), read sample by sample."""
    from continuum.tasks import TaskType
    from continuum.tasks.image_array_task_set import ArrayTaskSet

    if type(taskset) is not ArrayTaskSet or taskset.data_type != TaskType.IMAGE_ARRAY:
        return None
    if taskset.bounding_boxes is not None or taskset.target_trsf is not None:
        return None
    x, y, t = taskset.get_raw_samples()
    if x.dtype != np.uint8 or not (x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 3)):
        return None  # grayscale (N, H, W) or RGB (N, H, W, 3), as PIL reads them
    images = torch.from_numpy(x)
    images = images.unsqueeze(1) if x.ndim == 3 else images.permute(0, 3, 1, 2)
    labels = np.zeros(len(y), dtype=np.int64) if t is None else np.asarray(t)
    tasks = np.unique(labels)  # a task set's transformation may depend on the task label
    plans = [ArrayTransform.of(taskset.get_task_trsf(int(task)), tuple(images.shape[1:])) for task in tasks]
    if any(plan is None for plan in plans):
        return None
    converted = None if len(tasks) == 1 else torch.empty(images.shape, dtype=torch.uint8)
    draws = 0
    for task, plan in zip(tasks, plans):
        rows = torch.from_numpy(np.flatnonzero(labels == task))
        values = plan(images.contiguous() if converted is None else images.index_select(0, rows))
        draws += plan.draws_per_sample * len(rows)
        if converted is None:
            converted = values
        else:
            converted[rows] = values
    if draws:  # what the per-sample transformations draw from torch's global generator, in one call
        torch.empty(draws).uniform_()
    return converted, torch.from_numpy(y).long()


def usable_cores() -> int:
    """The cores this process may run on: those a cluster's scheduler (or taskset) binds it to,
    where the system says, else every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def decode_images(
    dataset: _ContinuumDataset,
    name: str = "the dataset",
    threads: int | None = None,
    cache: str | None = None,
    image_size: tuple[int, int] | None = None,
    resize: bool = False,
) -> _ContinuumDataset:
    """An image-path dataset (Tiny ImageNet, CORe50) read into an in-memory dataset of uint8 RGB
    arrays of shape (N, H, W, 3), exactly as continuum's per-sample path reads each file (PIL,
    then `convert("RGB")`, which also turns the few greyscale images into RGB). The tasks are
    then built and converted as CIFAR's are, whole arrays at once, and only the files of the
    samples kept (after `subsample` and `holdout`) are read. `threads` threads (default: one per
    core this process may run on) each decode a contiguous share of the files; opening a file
    holds Python's GIL, so they help only in part (1.2x to 1.6x with 2 threads on 2 cores).
    With a `cache` folder (`--image_cache`), the array is read from there when these same files
    were decoded before, and kept there otherwise (`image_cache`). Any other dataset is returned
    as it is. A file that cannot be read, or an image of another size than the first or than
    `image_size` (height, width: the dataset's), is refused with its path; with `resize`, every
    image is resized to `image_size` instead (a dataset of images of many sizes, such as DTD)."""
    from continuum.datasets import InMemoryDataset
    from continuum.tasks import TaskType

    if dataset.data_type != TaskType.IMAGE_PATH:
        return dataset
    paths, y, t = dataset.get_data()
    if len(paths) == 0:
        raise DataUnavailableError(f"{name}: its file lists name no images; the files are damaged or not its own")
    entry = None if cache is None else image_cache.entry_name(paths)
    if entry is None:
        images = decode_files(paths, name, threads, image_size, image_size if resize else None)
    else:
        with image_cache.locked(cache, entry):  # other processes decoding the same files wait, then read
            images = image_cache.load(cache, entry, len(paths))
            if images is None:
                images = decode_files(paths, name, threads, image_size, image_size if resize else None)
                image_cache.store(cache, entry, images)
    return InMemoryDataset(images, y, t, data_type=TaskType.IMAGE_ARRAY, train=dataset.train)


def decode_files(
    paths: Sequence[str], name: str, threads: int | None, image_size: tuple[int, int] | None = None,
    resize: tuple[int, int] | None = None,
) -> np.ndarray:
    """The images of `paths` as one uint8 array (N, H, W, 3), decoded by `threads` threads (see
    `decode_images`); with `resize` (height, width), each image is first resized to it
    (bilinearly, as PIL does), for datasets of images of many sizes (DTD in a stream)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def read(path: str) -> np.ndarray:
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
                return np.asarray(rgb if resize is None else rgb.resize(resize[::-1], Image.BILINEAR))
        except OSError as error:
            message = f"{name}: cannot read {path} ({error}); the file is damaged or missing"
            raise DataUnavailableError(message) from error

    first = read(paths[0])
    if image_size is not None and first.shape[:2] != tuple(image_size):
        raise DataUnavailableError(
            f"{name}: {paths[0]} is {first.shape[1]}x{first.shape[0]} pixels, where the dataset's images are "
            f"{image_size[1]}x{image_size[0]}; the files are not this dataset's, or were resized"
        )
    images = np.empty((len(paths), *first.shape), dtype=np.uint8)

    def fill(start: int, stop: int) -> None:
        for index in range(start, stop):
            image = read(paths[index])
            if image.shape != first.shape:
                raise DataUnavailableError(
                    f"{name}: {paths[index]} is {image.shape[1]}x{image.shape[0]} pixels but {paths[0]} is "
                    f"{first.shape[1]}x{first.shape[0]}; the files are damaged or not this dataset's"
                )
            images[index] = image

    images[0] = first
    count = max(1, min(threads or usable_cores(), len(paths)))
    bounds = [1 + (len(paths) - 1) * share // count for share in range(count + 1)]
    with ThreadPoolExecutor(count) as pool:
        for done in [pool.submit(fill, start, stop) for start, stop in zip(bounds, bounds[1:])]:
            done.result()  # re-raises a share's failure
    return images
