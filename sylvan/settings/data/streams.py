"""Turning continuum scenarios into per-task tensors that settings hand out as datasets.

Continuum applies its transformations (tensor conversion, permutations, rotations) per sample
when a task set is indexed. A setting reads every task once and keeps the result as tensors:
training then draws minibatches from memory, with no per-sample transform on the hot path, and
evaluation reuses the same tensors after every task. uint8 image arrays whose transformations
are tensor conversion, fixed rotations and pixel permutations are built whole (`images_at_once`)
and kept as uint8 pixels, made float per minibatch (`sylvan.minibatches.float_inputs`) to the
same values; anything else goes through the task set's own indexing, sample by sample, to
float32. Datasets of image files are first decoded into uint8 arrays (`decode_images`),
optionally kept in a cache folder (`image_cache`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from sylvan.errors import ConfigurationError, DataUnavailableError
from sylvan.minibatches import float_inputs
from sylvan.settings.data import image_cache

if TYPE_CHECKING:
    from continuum.datasets.base import _ContinuumDataset
    from continuum.scenarios import ContinualScenario


@dataclass
class TaskData:
    """One task of a stream: its training and test tensors, and the labels it contains.

    Inputs are float32, or uint8 pixels (0 to 255 standing for [0, 1]) where the dataset is made
    of uint8 images: the loaders and the evaluation turn them into float32 per minibatch
    (`sylvan.minibatches.float_inputs`), so a method always receives float inputs."""

    task_id: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[int]

    def train_dataset(self, with_task_labels: bool, order: torch.Tensor | None = None) -> TensorDataset:
        """The training set as the method sees it: (x, y), or (x, y, t) where task labels are
        allowed. `order` optionally fixes the order of the samples (online streams)."""
        x, y = (self.x_train, self.y_train) if order is None else (self.x_train[order], self.y_train[order])
        if with_task_labels:
            return TensorDataset(x, y, torch.full_like(y, self.task_id))
        return TensorDataset(x, y)


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


@dataclass(frozen=True)
class ArrayTransform:
    """A task's transformation of uint8 images, `Compose([RandomAffine..., ToTensor(),
    PermutationTransform...])`, as index gathers on the whole array of pixels (N, C, H, W):

    - a `RandomAffine` that can only draw one angle, with no translation, scaling or shear and
      nearest-neighbour sampling (continuum's `Rotations`), moves every output pixel from one
      input pixel or fills it: where from is found by running the transformation itself, once,
      on an image whose pixels hold their own positions, so the result is PIL's, pixel for pixel;
    - a `PermutationTransform` reorders each image's C * H * W values.

    `draws_per_sample` counts the floats the per-sample transformation draws from torch's
    global generator (a `RandomAffine` draws its angle even when it can draw only one), which
    the whole-array path draws too: the model, initialized from that generator next, must not
    depend on the path that read the data."""

    steps: tuple[tuple[str, torch.Tensor, int], ...]  # (operation, source index, fill)
    draws_per_sample: int

    @staticmethod
    def of(transform: Any, shape: tuple[int, ...]) -> ArrayTransform | None:
        """The plan of `transform` for images of `shape` (C, H, W); None for any other transformation."""
        from continuum.scenarios.permutations import PermutationTransform
        from torchvision.transforms import Compose, InterpolationMode, RandomAffine, ToTensor

        if not isinstance(transform, Compose):
            return None
        kinds = [type(step) for step in transform.transforms]
        if kinds.count(ToTensor) != 1:
            return None
        tensor_at = kinds.index(ToTensor)
        steps, draws = [], 0
        for step in transform.transforms[:tensor_at]:
            fixed = (
                type(step) is RandomAffine and step.degrees[0] == step.degrees[1] and step.translate is None
                and step.scale is None and step.shear is None and step.interpolation == InterpolationMode.NEAREST
                and (step.fill is None or type(step.fill) is int) and 0 <= (step.fill or 0) <= 255
            )
            if not fixed:
                return None
            steps.append(("pixels", affine_sources(step, shape[1], shape[2]), step.fill or 0))
            draws += 1
        for step in transform.transforms[tensor_at + 1:]:
            if type(step) is not PermutationTransform:
                return None
            if step.seed is not None:  # as PermutationTransform draws it for each sample
                generator = torch.Generator().manual_seed(step.seed)
                steps.append(("values", torch.randperm(int(np.prod(shape)), generator=generator), 0))
        return ArrayTransform(tuple(steps), draws)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The transformed copy of `images` (N, C, H, W), uint8."""
        n, c, h, w = images.shape
        for operation, source, fill in self.steps:
            if operation == "values":
                images = images.reshape(n, -1).index_select(1, source).reshape(n, c, h, w)
            else:  # source 0 is the fill, k the input pixel k - 1 of each channel
                padded = torch.cat([torch.full((n, c, 1), fill, dtype=images.dtype), images.reshape(n, c, h * w)], 2)
                images = padded.index_select(2, source).reshape(n, c, h, w)
        return images


def affine_sources(step: Any, height: int, width: int) -> torch.Tensor:
    """For each output pixel of the fixed `RandomAffine` `step`, 1 + the index of the input pixel
    it copies, or 0 where it is filled: the transformation applied, once, to a 32-bit PIL image
    whose pixels hold 1 + their index (nearest-neighbour sampling copies values, it never mixes
    them). Its parameters are drawn as the step draws them, from a fork of the global generator."""
    import torchvision.transforms.functional as F
    from PIL import Image

    positions = Image.fromarray(np.arange(1, height * width + 1, dtype=np.int32).reshape(height, width))
    with torch.random.fork_rng(devices=[]):
        params = step.get_params(step.degrees, step.translate, step.scale, step.shear, [width, height])
    moved = F.affine(positions, *params, interpolation=step.interpolation, fill=0, center=step.center)
    return torch.from_numpy(np.asarray(moved, dtype=np.int64).reshape(-1))


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
    `image_size` (height, width: the dataset's), is refused with its path."""
    from continuum.datasets import InMemoryDataset
    from continuum.tasks import TaskType

    if dataset.data_type != TaskType.IMAGE_PATH:
        return dataset
    paths, y, t = dataset.get_data()
    if len(paths) == 0:
        raise DataUnavailableError(f"{name}: its file lists name no images; the files are damaged or not its own")
    entry = None if cache is None else image_cache.entry_name(paths)
    if entry is None:
        images = decode_files(paths, name, threads, image_size)
    else:
        with image_cache.locked(cache, entry):  # other processes decoding the same files wait, then read
            images = image_cache.load(cache, entry, len(paths))
            if images is None:
                images = decode_files(paths, name, threads, image_size)
                image_cache.store(cache, entry, images)
    return InMemoryDataset(images, y, t, data_type=TaskType.IMAGE_ARRAY, train=dataset.train)


def decode_files(
    paths: Sequence[str], name: str, threads: int | None, image_size: tuple[int, int] | None = None
) -> np.ndarray:
    """The images of `paths` as one uint8 array (N, H, W, 3), decoded by `threads` threads (see
    `decode_images`)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def read(path: str) -> np.ndarray:
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
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
