"""Online continual learning: one pass over a stream whose classes change, no boundaries.

`OnlineSetting` is the root of the supervised branch: it says how the stream is made (the
dataset, its split into tasks, minibatches, augmentation) and how a method is evaluated on it;
its children change what the method is told (boundaries, task labels) and how the data are handed
out (epochs, domains, all at once). The run is `sylvan.run.supervised`, data-parallel with `--devices N`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, List, Optional

import torch
from torch.utils.data import DataLoader, TensorDataset

from sylvan.minibatches import minibatch_loader
from sylvan.parallel.data_parallel import DataParallelOptions, check_replay_options
from sylvan.run.budget import MemoryBudgetOptions
from sylvan.run.task_data import TaskData
from sylvan.settings.base import (
    ProgressBarOption,
    Setting,
    accelerator_device,
    check_accelerator,
    check_compile,
    check_precision,
)
from sylvan.settings.data import decoding, streams
from sylvan.settings.data.arrival import arrival_order
from sylvan.settings.data.checks import check_stream_options
from sylvan.settings.data.datasets import DatasetSpec, get_dataset
from sylvan.settings.data.inputs import InputOptions
from sylvan.settings.data.loading import seeded_tasks

if TYPE_CHECKING:
    from continuum.datasets.base import _ContinuumDataset
    from continuum.scenarios import ContinualScenario

    from sylvan.parallel.data_parallel import DataParallel
    from sylvan.run.evaluation import Evaluation

DEFAULT_DATA_DIR = os.environ.get("SYLVAN_DATA_DIR", "~/.cache/sylvan/data")


@dataclass
class OnlineSetting(DataParallelOptions, InputOptions, MemoryBudgetOptions, ProgressBarOption, Setting):
    """A supervised stream of tasks with new classes, seen once in small batches, with no task
    boundaries and no task labels. Reports online (predict-then-train) accuracy and, at the end
    of the stream, the accuracy on every task's test set."""

    name: ClassVar[str] = "online"
    single_pass: ClassVar[bool] = True

    # digits, synthetic, mnist, fashion_mnist, cifar10, cifar100, tiny_imagenet, core50 or random_cifar10
    # (random images of CIFAR-10's shape, size and labels: a speed check with nothing to download)
    dataset: str = "digits"
    nb_tasks: int = 5  # number of tasks the classes are split into
    # classes of the first task, the others split evenly among the other tasks (CIFAR-100 as 50
    # classes, then 5 tasks of 10: --initial_classes 50 --nb_tasks 6); default: an even split
    initial_classes: Optional[int] = None
    class_order: Optional[List[int]] = None  # order in which classes arrive (default: 0..C-1)
    random_class_order: bool = False  # shuffle the class order with the seed
    # blurry task boundaries: each class gives this fraction of its training samples to the other
    # tasks, spread uniformly among them (with tasks of equal size, the Blurry-M streams of Bang et
    # al., CVPR 2021, with M = 100 x blurry); 0 keeps tasks of disjoint classes, (T - 1) / T for T
    # tasks mixes the classes evenly over the stream
    blurry: float = 0.0
    batch_size: int = 10  # samples per training minibatch
    data_dir: str = DEFAULT_DATA_DIR  # where datasets are downloaded and cached
    # datasets of image files (tiny_imagenet, core50, image folders): a folder where their decoded
    # images are kept, so that later runs (and the other workers) read them instead of decoding
    # the files again; 3 bytes per pixel (default: decode every time)
    image_cache: Optional[str] = None
    # use a class-stratified subset of this many training samples (synthetic: generate this many)
    train_samples: Optional[int] = None
    # hold out this fraction of each class's training samples (after --train_samples) as a
    # validation set, and evaluate on it instead of the test set: for tuning hyperparameters
    # without looking at the test set (0: train on everything, evaluate on the test set)
    validation_fraction: float = 0.0
    accelerator: str = "auto"  # cpu, gpu or auto
    # numerical precision of training: 32-true, bf16-mixed (CPU or GPU), or 16-mixed (GPU, float16
    # with loss scaling); weights stay float32, and evaluation runs in float32
    precision: str = "32-true"
    # torch.compile the network the engine's fits train (its feature layers, which every built-in
    # backbone has), in training and evaluation: for large networks on a GPU over long runs (the
    # ResNet-18's step takes 0.92 times as long on an H200, after about 20 s of compiling); small
    # networks run slower. A network a method trains in a loop of its own runs eagerly
    compile: bool = False
    eval_batch_size: int = 1024  # samples per forward pass at evaluation

    # what a method may read of the setting through its run (besides fields and assumptions)
    facts: ClassVar[tuple[str, ...]] = (
        "dataset_spec", "input_shape", "num_classes", "num_outputs", "epochs_per_task", "train_augmentation",
        "input_normalization", "resolved_augmentation", "resolved_class_order", "class_increments",
        "evaluation_split", "device", "pins_batches", "shows_progress_bar", "world_size",
    )

    def validate(self) -> None:
        super().validate()
        check_accelerator(self.accelerator)
        check_precision(self.precision, self.accelerator)
        check_compile(self.compile, self.accelerator)
        check_stream_options(self)
        self.check_parallel_options()
        self.check_memory_budget()

    def check_method(self, method: Any) -> None:
        check_replay_options(self, method)

    # ----- the data -----------------------------------------------------------------------

    @property
    def dataset_spec(self) -> DatasetSpec:
        return get_dataset(self.dataset)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.dataset_spec.input_shape

    @property
    def num_classes(self) -> int:
        """Size of the output space: every class of the dataset (one head over all classes)."""
        return self.dataset_spec.num_classes

    @property
    def num_outputs(self) -> int:
        """Scores `predict` returns per input: one per class."""
        return self.num_classes

    def resolved_class_order(self) -> list[int]:
        return arrival_order(self.class_order, self.random_class_order, self.num_classes, self.seed)

    def make_scenario(self, dataset: _ContinuumDataset) -> ContinualScenario:
        """The continuum scenario that splits `dataset` (train or test) into tasks."""
        from continuum import ClassIncremental

        return ClassIncremental(dataset, increment=self.class_increments(), class_order=self.resolved_class_order())

    def class_increments(self) -> list[int]:
        """New classes per task: an even split, the remainder going to the first tasks; after the
        first task's `initial_classes`, where given."""
        first = [] if self.initial_classes is None else [self.initial_classes]
        base, extra = divmod(self.num_classes - sum(first), self.nb_tasks - len(first))
        return first + [base + (1 if task < extra else 0) for task in range(self.nb_tasks - len(first))]

    def seeded_tasks(self) -> list[TaskData]:
        """The run's tasks, loaded with the global generators seeded (`sylvan.settings.data.loading`)."""
        return seeded_tasks(self.seed, self.prepare_tasks)

    def prepare_tasks(self) -> list[TaskData]:
        """Load the dataset and split it into tasks, as tensors."""
        train, test = self.load_splits()
        tasks = streams.build_tasks(self.make_scenario(train), self.make_scenario(test))
        return streams.blur_tasks(tasks, self.blurry, self.seed)

    def load_splits(self) -> tuple[_ContinuumDataset, _ContinuumDataset]:
        """The training set and the set the run evaluates on (the test set, or the validation
        split held out of the training set), subsampled and decoded, not yet split into tasks."""
        train, test = self.dataset_spec.load(self.data_dir, self.train_samples, self.seed)
        if self.dataset != "synthetic":
            train = streams.subsample(train, self.train_samples, self.seed, name=repr(self.dataset))
        if self.validation_fraction > 0:  # the test set is left unread
            train, test = streams.holdout(train, self.validation_fraction, self.seed, name=repr(self.dataset))
        name, size = repr(self.dataset), self.input_shape[1:]
        cache, resize = self.image_cache, self.dataset_spec.resized
        return tuple(decoding.decode_images(split, name, cache=cache, image_size=size, resize=resize)
                     for split in (train, test))

    @property
    def evaluation_split(self) -> str:
        """What the accuracy matrix is measured on: "test", or "validation" (held out of the
        training set by --validation_fraction)."""
        return "validation" if self.validation_fraction > 0 else "test"

    def train_loader(self, dataset: TensorDataset, shuffle: bool, offset: int = 0) -> DataLoader:
        """A minibatch loader over `dataset` with the setting's batch size and seed."""
        generator = torch.Generator().manual_seed(self.seed * 1000 + offset)
        return minibatch_loader(dataset, self.batch_size, shuffle, generator, pin_memory=self.pins_batches)

    def stream_loader(self, tasks: list[TaskData]) -> DataLoader:
        """The whole stream, in a single pass (`sylvan.settings.data.streams.stream_dataset`)."""
        stream = streams.stream_dataset(tasks, self.task_labels_at_train, self.seed)
        return minibatch_loader(stream, self.batch_size, shuffle=False, pin_memory=self.pins_batches)

    @property
    def pins_batches(self) -> bool:
        """Whether training minibatches are served in pinned memory: when training on a GPU."""
        return self.device.type == "cuda"

    # ----- training -----------------------------------------------------------------------

    @property
    def epochs_per_task(self) -> int:
        return 1

    @property
    def device(self) -> torch.device:
        """Where methods should keep their model for evaluation."""
        return accelerator_device(self.accelerator)

    def nb_stages(self, tasks: list[TaskData]) -> int:
        return 1

    def training_stages(self, tasks: list[TaskData]):
        """Yield, per training stage, the loaders trained on in it. Online: one, the whole stream."""
        yield [self.stream_loader(tasks)]

    # ----- evaluation and the run ---------------------------------------------------------

    def evaluate(self, method: Any, tasks: list[TaskData], parallel: DataParallel | None = None) -> Evaluation:
        """Every task's accuracy, task-aware accuracy and confusion matrix (`sylvan.run.evaluation`)."""
        from sylvan.run.evaluation import evaluate_setting

        return evaluate_setting(self, method, tasks, parallel)

    def stages(self) -> Any:
        """The tasks, loaded now, their stages and evaluation (`sylvan.run.supervised.TaskStages`)."""
        from sylvan.run.supervised import TaskStages

        return TaskStages(self)
