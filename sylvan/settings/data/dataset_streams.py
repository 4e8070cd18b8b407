"""Streams of datasets: each task a dataset, or a transformed part of one, with a label space of
its own (the `dataset_stream` setting).

A stream is planned before anything is loaded (`TaskPlan`: which dataset, which of its classes,
which transformation), so that a setting knows its tasks and classes when it is configured:

- a named stream (`named_plan`): one task per dataset, with all its classes, as given;
- a generated stream (`generated_plan`), in the manner of the long stream of CTrL (Veniat et
  al., ICLR 2021): each task draws a dataset among the sources and a subset of 2 to 5 of its
  classes, a transformation of its images (none, a rotation by a multiple of 90 degrees, a fixed
  permutation of the pixels, inverted grey levels, or recoloured channels), sometimes a shuffled
  assignment of its classes to labels, and sometimes few training samples per class.

`build_tasks` then reads each dataset once and makes the tasks: every task's images brought to
one shape (grey images repeated over the channels of colour ones, sides resized bilinearly to the
largest), its labels numbered after the previous tasks' (task k's classes are its own), as uint8
pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.run.task_data import TaskData
from sylvan.settings.data.datasets import get_dataset

TRANSFORMATIONS = ("none", "rotate", "permute", "invert", "recolour")
CLASSES_PER_TASK = (2, 5)  # a generated task's classes: from 2 to 5 (fewer where a dataset has fewer)
SHUFFLED_LABELS = 0.25  # the chance that a generated task assigns its classes to labels in a shuffled order
FEW_SHOT = 0.2  # the chance that a generated task keeps few training samples per class
FEW_SHOT_SAMPLES = 10  # how few


@dataclass(frozen=True)
class TaskPlan:
    """One task of a stream before it is loaded: `classes` of `dataset` (labels 0 to
    len(classes) - 1 in the order given), `transformation` of its images with its `parameter`
    (the quarter turns of a rotation, the seed of a permutation or of a recolouring), and
    `samples_per_class`, where the training samples of each class are capped."""

    dataset: str
    classes: tuple[int, ...]
    transformation: str = "none"
    parameter: int = 0
    samples_per_class: int | None = None


def stream_datasets(names: str, option: str) -> list[str]:
    """The dataset names of a comma-separated list (`option`, for messages), each checked."""
    datasets = [name.strip() for name in names.split(",")]
    if not any(datasets):
        raise ConfigurationError(f"--{option} {names!r} names no dataset (every name of the list is empty); give "
                                 "names separated by commas, such as mnist,digits")
    if not all(datasets):
        empty = [str(k + 1) for k, name in enumerate(datasets) if not name]
        raise ConfigurationError(f"--{option} {names!r}: name {' and '.join(empty)} of the list is empty (a comma "
                                 "too many?); give names separated by single commas, such as mnist,digits")
    for name in datasets:
        get_dataset(name)
    return datasets


def named_plan(names: str) -> list[TaskPlan]:
    """One task per dataset of `names` (separated by commas), with all its classes."""
    return [TaskPlan(name, tuple(range(get_dataset(name).num_classes))) for name in stream_datasets(names, "stream")]


def generated_plan(length: int, sources: list[str], seed: int) -> list[TaskPlan]:
    """A stream of `length` tasks drawn from the datasets `sources` with `seed` (see the module's
    docstring). The same arguments give the same stream."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
    plans = []
    for _ in range(length):
        dataset = sources[int(rng.integers(len(sources)))]
        available = get_dataset(dataset).num_classes
        low, high = min(CLASSES_PER_TASK[0], available), min(CLASSES_PER_TASK[1], available)
        count = int(rng.integers(low, high + 1))
        classes = np.sort(rng.choice(available, size=count, replace=False))
        if rng.random() < SHUFFLED_LABELS:
            classes = rng.permutation(classes)
        transformation = TRANSFORMATIONS[int(rng.integers(len(TRANSFORMATIONS)))]
        parameter = int(rng.integers(1, 4)) if transformation == "rotate" else int(rng.integers(2**31))
        few = FEW_SHOT_SAMPLES if rng.random() < FEW_SHOT else None
        plans.append(TaskPlan(dataset, tuple(int(c) for c in classes), transformation,
                              parameter if transformation != "none" else 0, few))
    return plans


def common_shape(plans: list[TaskPlan], side: int | None = None) -> tuple[int, int, int]:
    """The shape every task's images are brought to: the most channels among the datasets, and
    `side` (by default the largest side among them)."""
    shapes = [get_dataset(plan.dataset).input_shape for plan in plans]
    if any(len(shape) != 3 for shape in shapes):
        raise ConfigurationError("a stream's datasets must be images (channels, height, width)")
    largest = max(max(shape[1:]) for shape in shapes)
    return max(shape[0] for shape in shapes), side or largest, side or largest


def images(x: np.ndarray) -> torch.Tensor:
    """An array of images as continuum holds them ((N, H, W) grey, or (N, H, W, C)) as a uint8
    tensor (N, C, H, W)."""
    tensor = torch.from_numpy(np.ascontiguousarray(x))
    return tensor.unsqueeze(1) if tensor.dim() == 3 else tensor.permute(0, 3, 1, 2).contiguous()


def task_images(x: np.ndarray, name: str, shape: tuple[int, int, int]) -> torch.Tensor:
    """A task's images as a uint8 tensor (N, C, H, W): arrays as they are, files (a dataset of
    image files: only the task's samples are read) decoded and resized to the sides of `shape`."""
    if x.dtype.kind in "SUO":
        from sylvan.settings.data.decoding import decode_files

        return images(decode_files([str(path) for path in x], repr(name), None, resize=shape[1:]))
    return images(x)


def reshaped(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 images (N, C, H, W) brought to `shape`: channels repeated (grey to colour) or weighed
    into grey levels (colour to grey), sides resized bilinearly and rounded back to whole levels."""
    channels, height, width = shape
    if x.shape[2:] != (height, width):
        resized = F.interpolate(x.float(), size=(height, width), mode="bilinear", align_corners=False)
        x = resized.round_().clamp_(0, 255).to(torch.uint8)
    if x.shape[1] == 3 and channels == 1:  # to grey levels, as PIL's convert("L") weighs the channels
        weights = torch.tensor([299, 587, 114]).view(1, 3, 1, 1)
        return ((x.long() * weights).sum(1, keepdim=True) + 500).div(1000, rounding_mode="floor").to(torch.uint8)
    if x.shape[1] != channels:
        if x.shape[1] != 1:
            raise ConfigurationError(f"cannot bring images of {x.shape[1]} channels to {channels}")
        x = x.expand(-1, channels, -1, -1).contiguous()
    return x


def transformed(x: torch.Tensor, transformation: str, parameter: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) under a task's transformation (`TRANSFORMATIONS`)."""
    if transformation == "none":
        return x
    if transformation == "rotate":
        return torch.rot90(x, parameter, dims=(2, 3)).contiguous()
    if transformation == "invert":
        return 255 - x
    generator = torch.Generator().manual_seed(parameter)
    if transformation == "permute":  # one permutation of the pixel positions, the same for every channel
        order = torch.randperm(x.shape[2] * x.shape[3], generator=generator)
        return x.flatten(2)[:, :, order].reshape(x.shape)
    if transformation == "recolour":  # each channel's grey levels mapped by a random affine map
        scale = 0.3 + 0.7 * torch.rand(x.shape[1], generator=generator)
        shift = torch.rand(x.shape[1], generator=generator) * (1 - scale) * 255
        return (x.float() * scale[:, None, None] + shift[:, None, None]).round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"unknown transformation {transformation!r}")


def capped(labels: np.ndarray, members: np.ndarray, per_class: int | None, rng: np.random.Generator) -> np.ndarray:
    """`members` (indices into `labels`), keeping at most `per_class` of each class, drawn with `rng`."""
    if per_class is None:
        return members
    kept = [rng.choice(rows, size=min(per_class, len(rows)), replace=False)
            for rows in (members[labels[members] == label] for label in np.unique(labels[members]))]
    return np.sort(np.concatenate(kept))


def loaded_per_dataset(data_dir: str, size: int | None, seed: int) -> tuple[Any, Any]:
    """The loader of a stream seen as one dataset (`DatasetSpec.load`): there is none, since a
    stream reads each of its datasets (`build_tasks`)."""
    raise ConfigurationError("a stream of datasets is loaded dataset by dataset, by its setting")


def build_tasks(plans: list[TaskPlan], load: Callable[[str], tuple[Any, Any]], shape: tuple[int, int, int],
                seed: int) -> list[TaskData]:
    """The tasks of a planned stream. `load(name)` returns a dataset's (training, evaluation)
    continuum datasets, as the setting prepares them (subsampled, a validation split held out);
    each is loaded once. Task k's labels follow the previous tasks' classes."""
    loaded: dict[str, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {}
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3,)))
    tasks, first_label = [], 0
    for task_id, plan in enumerate(plans):
        if plan.dataset not in loaded:
            loaded[plan.dataset] = tuple(split.get_data()[:2] for split in load(plan.dataset))  # type: ignore[assignment]
        parts = []
        for split, (x, y) in enumerate(loaded[plan.dataset]):
            y = np.asarray(y)
            members = np.flatnonzero(np.isin(y, plan.classes))
            if split == 0:
                members = capped(y, members, plan.samples_per_class, rng)
            labels = np.zeros(max(int(y.max()), *plan.classes) + 1, dtype=np.int64)
            labels[list(plan.classes)] = first_label + np.arange(len(plan.classes))
            inputs = transformed(reshaped(task_images(np.asarray(x)[members], plan.dataset, shape), shape),
                                 plan.transformation, plan.parameter)
            parts.append((inputs, torch.from_numpy(labels[y[members]])))
        (x_train, y_train), (x_test, y_test) = parts
        classes = list(range(first_label, first_label + len(plan.classes)))
        tasks.append(TaskData(task_id, x_train, y_train, x_test, y_test, classes))
        first_label += len(plan.classes)
    return tasks
