"""Checks of a supervised stream's options (dataset, tasks, classes, blur, augmentation,
normalization): invalid or contradictory values are refused before anything is loaded."""

from __future__ import annotations

from typing import Any

from sylvan.errors import ConfigurationError, refuse_if_given, require_in, unknown_name
from sylvan.settings.data.arrival import check_arrival_order
from sylvan.settings.data.augmentation import AUGMENTATIONS
from sylvan.settings.data.datasets import DATASETS


def check_stream_options(setting: Any) -> None:
    """Raise `ConfigurationError` for stream options of `setting` (an `OnlineSetting`) that are
    invalid or contradict each other or the dataset."""
    spec = setting.dataset_spec
    if setting.nb_tasks < 1:
        raise ConfigurationError(f"--nb_tasks must be >= 1, got {setting.nb_tasks}")
    if setting.batch_size < 1 or setting.eval_batch_size < 1:
        raise ConfigurationError("--batch_size and --eval_batch_size must be >= 1")
    if setting.train_samples is not None and setting.train_samples < spec.num_classes:
        raise ConfigurationError(f"--train_samples must be at least the number of classes ({spec.num_classes})")
    require_in(setting, 0, 1, "validation_fraction", high_open=True)
    if not spec.image_files:
        refuse_if_given(setting, "image_cache", f"{setting.dataset} is not made of image files to decode")
    check_task_split(setting, spec.num_classes)
    check_arrival_order("class", setting.class_order, setting.random_class_order, spec.num_classes)
    check_blurry(setting)
    check_input_options(setting, spec)


def check_task_split(setting: Any, num_classes: int) -> None:
    """Refuse more tasks than classes, and an `--initial_classes` that leaves a task no class."""
    if not setting.shared_output_space and setting.nb_tasks > num_classes:
        raise ConfigurationError(
            f"--nb_tasks {setting.nb_tasks} is more than the {num_classes} classes of "
            f"{setting.dataset}: each task needs at least one new class"
        )
    if setting.initial_classes is None or setting.shared_output_space:
        return
    if not 1 <= setting.initial_classes <= num_classes - (setting.nb_tasks - 1):
        raise ConfigurationError(
            f"--initial_classes must leave at least one new class to each of the other {setting.nb_tasks - 1} "
            f"tasks: between 1 and {num_classes - setting.nb_tasks + 1} for {setting.dataset}, got "
            f"{setting.initial_classes}"
        )
    if setting.nb_tasks == 1:
        raise ConfigurationError("--initial_classes needs --nb_tasks 2 or more: one task holds every class")


def check_blurry(setting: Any) -> None:
    """Refuse a --blurry outside [0, 1), or one given where tasks are not made of classes of
    their own, or where there is one task."""
    require_in(setting, 0, 1, "blurry", high_open=True)
    if not setting.blurry:
        return
    if setting.shared_output_space:
        raise ConfigurationError(f"--blurry does not apply to {setting.name}: every task holds every class, so "
                                 "there is no boundary between classes to blur")
    if setting.task_labels_at_test:
        raise ConfigurationError(f"--blurry does not apply to {setting.name}: a task label at test time names the "
                                 "classes of one task, and a blurry task holds samples of the others")
    if setting.nb_tasks < 2:
        raise ConfigurationError("--blurry needs --nb_tasks 2 or more: with one task there is no boundary")


def check_input_options(setting: Any, spec: Any) -> None:
    """Refuse an unknown augmentation, a padding without crops, and a normalization without
    statistics or crops of inputs that are not images."""
    if setting.augmentation not in ("default", *AUGMENTATIONS):
        raise unknown_name("augmentation", setting.augmentation, ["default", *AUGMENTATIONS])
    if setting.crop_padding < 0:
        raise ConfigurationError(f"--crop_padding must be >= 0, got {setting.crop_padding}")
    if setting.resolved_augmentation != "crop_flip":
        refuse_if_given(setting, "crop_padding", f"it is crop_flip's padding, and {setting.dataset} is trained with "
                        f"--augmentation {setting.resolved_augmentation} (give --augmentation crop_flip)")
    if setting.normalize_inputs and spec.channel_stats is None:
        known = [name for name, other in DATASETS.items() if other.channel_stats is not None]
        raise ConfigurationError(
            f"--normalize_inputs: no per-channel statistics are known for {setting.dataset} (they are for "
            f"{', '.join(known)})"
        )
    if setting.resolved_augmentation == "crop_flip" and len(spec.input_shape) != 3:
        raise ConfigurationError(
            f"--augmentation crop_flip needs images (channels, height, width); {setting.dataset} samples "
            f"have shape {spec.input_shape}"
        )
