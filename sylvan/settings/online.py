"""Online continual learning: one pass over a stream whose classes change, no boundaries.

`OnlineSetting` is the root of the supervised branch: it owns the dataset, the split into
tasks, the evaluation loop and the bookkeeping of results; its children change what the method
is told (boundaries, task labels) and how the data are handed out (epochs, domains, all at once).
"""

from __future__ import annotations

import gc
import os
import sys
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, List, NamedTuple, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from sylvan.checkpoints import RunCheckpoint, restore_rng_states, rng_states
from sylvan.errors import ConfigurationError, InapplicableMethodError, refuse_if_given, require_in, unknown_name
from sylvan.metrics import Results
from sylvan.minibatches import float_inputs, minibatch_loader
from sylvan.settings.augmentation import AUGMENTATIONS, RandomCropFlip, build_augmentation
from sylvan.settings.base import Setting, accelerator_device, check_accelerator, check_precision
from sylvan.settings.datasets import DATASETS, DatasetSpec, get_dataset
from sylvan.settings.streams import TaskData, blur_tasks, build_tasks, decode_images, holdout, subsample

if TYPE_CHECKING:
    from continuum.datasets.base import _ContinuumDataset
    from continuum.scenarios import ContinualScenario
    from lightning.pytorch.callbacks import Callback

    from sylvan.settings.callbacks import OnlineAccuracyMeter

DEFAULT_DATA_DIR = os.environ.get("SYLVAN_DATA_DIR", "~/.cache/sylvan/data")


def check_arrival_order(kind: str, given: list[int] | None, shuffled: bool, count: int, of: str = "") -> None:
    """Refuse a `--KIND_order` given with `--random_KIND_order`, or one that is not a
    permutation of 0..count-1 (`of` says of what, for the message)."""
    if given is not None and shuffled:
        raise ConfigurationError(
            f"--{kind}_order and --random_{kind}_order contradict each other: give the order, or ask for "
            "a random one drawn with the seed"
        )
    if given is not None and sorted(given) != list(range(count)):
        raise ConfigurationError(f"--{kind}_order must be a permutation of 0..{count - 1}{of}, got {list(given)}")


def arrival_order(given: list[int] | None, shuffled: bool, count: int, seed: int) -> list[int]:
    """The order in which `count` things (classes, domains) arrive: the one given, or a
    permutation drawn with `seed` when `shuffled`, or 0..count-1."""
    if given is not None:
        return list(given)
    if shuffled:
        return np.random.default_rng(seed).permutation(count).tolist()
    return list(range(count))


class Evaluation(NamedTuple):
    """What one evaluation of a method on every task's test set measured."""

    accuracies: list[float]  # on each task's test set
    aware: list[float] | None  # the same with scores restricted to the task's classes (None: tasks share them)
    confusion: torch.Tensor  # (classes, classes) int64 counts[true class, predicted class] over all of them


# the tensors of the tasks this process's runs have loaded, to see what finished runs left behind
_loaded_tensors: list[weakref.ReferenceType] = []
# a full collection costs about 0.25 s with Lightning loaded: worth it where this much is held
FREE_FROM_BYTES = 64 * 2**20


def free_finished_runs() -> None:
    """Free what earlier runs of this process left behind, before a run loads its data. A
    finished run's setting, method, learner and Lightning trainers reference one another, and
    through them its tasks' tensors (in GPU memory too, where it trained there): dropping them
    frees nothing until Python collects its cyclic garbage in full, which it seldom does. A loop
    of runs (a sweep, the benchmarks) would hold every earlier run's data: 1.1 GB a run for 20
    permuted-MNIST tasks. Collects where the tensors of earlier runs still alive take at least
    `FREE_FROM_BYTES`."""
    alive = [tensor for tensor in (ref() for ref in _loaded_tensors) if tensor is not None]
    _loaded_tensors[:] = [weakref.ref(tensor) for tensor in alive]
    if sum(tensor.untyped_storage().nbytes() for tensor in alive) >= FREE_FROM_BYTES:
        del alive
        gc.collect()


def track_loaded(tasks: list[TaskData]) -> None:
    """Remember the tensors of a run's tasks (weakly), for `free_finished_runs`."""
    for task in tasks:
        _loaded_tensors.extend(weakref.ref(t) for t in (task.x_train, task.y_train, task.x_test, task.y_test))


@dataclass
class OnlineSetting(Setting):
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
    # show Lightning's progress bar during training: true (or the bare flag), false, or by
    # default only when the output is a terminal (a log file gets a line per task instead)
    progress_bar: Optional[bool] = field(default=None, metadata={"custom_args": {"const": True}})
    eval_batch_size: int = 1024  # samples per forward pass at evaluation
    # input augmentation at training time, drawn afresh each time a sample is trained on (new and
    # replayed samples; never at evaluation, never in what a buffer stores): default (the
    # dataset's standard one: crop_flip for CIFAR, none for the others), none, or crop_flip (a
    # random crop of the image zero-padded by --crop_padding pixels, and a random horizontal flip)
    augmentation: str = "default"
    crop_padding: int = 4  # crop_flip: pixels of zero padding around the image before the random crop
    # normalize inputs by the dataset's per-channel mean and std, inside the network (after any
    # augmentation; buffers keep pixels in [0, 1]): true (or the bare flag), false, or by default
    # as its benchmarks do (CIFAR yes, the MNIST family no); digits and synthetic have no statistics
    normalize_inputs: Optional[bool] = field(default=None, metadata={"custom_args": {"const": True}})

    # Set by `apply` for the duration of a run (plain attributes, not fields).
    _tracker = None
    _online_meter = None

    def validate(self) -> None:
        super().validate()
        spec = self.dataset_spec
        if self.nb_tasks < 1:
            raise ConfigurationError(f"--nb_tasks must be >= 1, got {self.nb_tasks}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigurationError("--batch_size and --eval_batch_size must be >= 1")
        if self.train_samples is not None and self.train_samples < spec.num_classes:
            raise ConfigurationError(
                f"--train_samples must be at least the number of classes ({spec.num_classes})"
            )
        require_in(self, 0, 1, "validation_fraction", high_open=True)
        if not spec.image_files:
            refuse_if_given(self, "image_cache", f"{self.dataset} is not made of image files to decode")
        check_accelerator(self.accelerator)
        check_precision(self.precision, self.accelerator)
        if not self.shared_output_space and self.nb_tasks > spec.num_classes:
            raise ConfigurationError(
                f"--nb_tasks {self.nb_tasks} is more than the {spec.num_classes} classes of "
                f"{self.dataset}: each task needs at least one new class"
            )
        if (self.initial_classes is not None and not self.shared_output_space
                and not 1 <= self.initial_classes <= spec.num_classes - (self.nb_tasks - 1)):
            raise ConfigurationError(
                f"--initial_classes must leave at least one new class to each of the other {self.nb_tasks - 1} "
                f"tasks: between 1 and {spec.num_classes - self.nb_tasks + 1} for {self.dataset}, got "
                f"{self.initial_classes}"
            )
        if self.initial_classes is not None and not self.shared_output_space and self.nb_tasks == 1:
            raise ConfigurationError("--initial_classes needs --nb_tasks 2 or more: one task holds every class")
        check_arrival_order("class", self.class_order, self.random_class_order, spec.num_classes)
        self._check_blurry()
        if self.augmentation not in ("default", *AUGMENTATIONS):
            raise unknown_name("augmentation", self.augmentation, ["default", *AUGMENTATIONS])
        if self.crop_padding < 0:
            raise ConfigurationError(f"--crop_padding must be >= 0, got {self.crop_padding}")
        if self.resolved_augmentation != "crop_flip":
            refuse_if_given(self, "crop_padding", f"it is crop_flip's padding, and {self.dataset} is trained with "
                            f"--augmentation {self.resolved_augmentation} (give --augmentation crop_flip)")
        if self.normalize_inputs and spec.channel_stats is None:
            known = [name for name, other in DATASETS.items() if other.channel_stats is not None]
            raise ConfigurationError(
                f"--normalize_inputs: no per-channel statistics are known for {self.dataset} (they are for "
                f"{', '.join(known)})"
            )
        if self.resolved_augmentation == "crop_flip" and len(spec.input_shape) != 3:
            raise ConfigurationError(
                f"--augmentation crop_flip needs images (channels, height, width); {self.dataset} samples "
                f"have shape {spec.input_shape}"
            )

    def _check_blurry(self) -> None:
        """Refuse a --blurry outside [0, 1), or one given where tasks are not made of classes of
        their own, or where there is one task."""
        require_in(self, 0, 1, "blurry", high_open=True)
        if not self.blurry:
            return
        if self.shared_output_space:
            raise ConfigurationError(f"--blurry does not apply to {self.name}: every task holds every class, so "
                                     "there is no boundary between classes to blur")
        if self.task_labels_at_test:
            raise ConfigurationError(f"--blurry does not apply to {self.name}: a task label at test time names the "
                                     "classes of one task, and a blurry task holds samples of the others")
        if self.nb_tasks < 2:
            raise ConfigurationError("--blurry needs --nb_tasks 2 or more: with one task there is no boundary")

    # ----- the data -----------------------------------------------------------------------

    @property
    def dataset_spec(self) -> DatasetSpec:
        return get_dataset(self.dataset)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.dataset_spec.input_shape

    @property
    def resolved_augmentation(self) -> str:
        """`--augmentation`, with "default" replaced by the dataset's standard augmentation."""
        return self.dataset_spec.augmentation if self.augmentation == "default" else self.augmentation

    def train_augmentation(self) -> RandomCropFlip | None:
        """A fresh, seeded instance of the training augmentation (None where there is none), for
        the method to apply to every input it trains on."""
        return build_augmentation(self.resolved_augmentation, padding=self.crop_padding, seed=self.seed)

    def input_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The per-channel (mean, std) the network normalizes its inputs by, or None: from
        `--normalize_inputs`, by default the dataset's benchmark practice."""
        spec = self.dataset_spec
        wanted = spec.normalized if self.normalize_inputs is None else self.normalize_inputs
        return spec.channel_stats if wanted else None

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

        return ClassIncremental(
            dataset, increment=self.class_increments(), class_order=self.resolved_class_order()
        )

    def class_increments(self) -> list[int]:
        """New classes per task: an even split, the remainder going to the first tasks; after the
        first task's `initial_classes`, where given."""
        first = [] if self.initial_classes is None else [self.initial_classes]
        base, extra = divmod(self.num_classes - sum(first), self.nb_tasks - len(first))
        return first + [base + (1 if task < extra else 0) for task in range(self.nb_tasks - len(first))]

    def prepare_data(self) -> None:
        self._prepared = (self._seeded_tasks(), rng_states())

    def _seeded_tasks(self) -> list[TaskData]:
        """Seed the global generators and load the tasks. Loading draws from torch's generator,
        which then initializes the model: tasks loaded by `prepare_data` come with the
        generators' states as loading left them, put back here, so a seed's run is the same."""
        from lightning import seed_everything

        seed_everything(self.seed, verbose=False)
        prepared, self._prepared = getattr(self, "_prepared", None), None  # another apply loads afresh
        if prepared is None:
            free_finished_runs()
            tasks = self.prepare_tasks()
            track_loaded(tasks)
            return tasks
        tasks, states = prepared
        restore_rng_states(states)
        return tasks

    def prepare_tasks(self) -> list[TaskData]:
        """Load the dataset and split it into tasks, as tensors."""
        train, test = self.load_splits()
        tasks = build_tasks(self.make_scenario(train), self.make_scenario(test))
        return blur_tasks(tasks, self.blurry, self.seed)

    def load_splits(self) -> tuple[_ContinuumDataset, _ContinuumDataset]:
        """The training set and the set the run evaluates on (the test set, or the validation
        split held out of the training set), subsampled and decoded, not yet split into tasks."""
        train, test = self.dataset_spec.load(self.data_dir, self.train_samples, self.seed)
        if self.dataset != "synthetic":
            train = subsample(train, self.train_samples, self.seed, name=repr(self.dataset))
        if self.validation_fraction > 0:  # the test set is left unread
            train, test = holdout(train, self.validation_fraction, self.seed, name=repr(self.dataset))
        name, size = repr(self.dataset), self.input_shape[1:]
        return tuple(decode_images(split, name, cache=self.image_cache, image_size=size) for split in (train, test))

    @property
    def pixel_inputs(self) -> bool:
        """Whether the tasks of the run (built by `apply`) keep their inputs as uint8 pixels,
        which the loaders make float32 k / 255 (`sylvan.minibatches.float_inputs`): MNIST, CIFAR,
        digits, ... and their permutations and rotations (nearest-pixel sampling). Found
        once per run, by `apply`: methods ask at every training step (`stored_fields`)."""
        return getattr(self, "_pixel_inputs", False)

    @property
    def evaluation_split(self) -> str:
        """What the accuracy matrix is measured on: "test", or "validation" (held out of the
        training set by --validation_fraction)."""
        return "validation" if self.validation_fraction > 0 else "test"

    def _generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1000 + offset)

    def train_loader(self, dataset: TensorDataset, shuffle: bool, offset: int = 0) -> DataLoader:
        """A minibatch loader over `dataset` with the setting's batch size and seed."""
        generator = self._generator(offset)
        return minibatch_loader(dataset, self.batch_size, shuffle, generator, pin_memory=self.pins_batches)

    def stream_loader(self, tasks: list[TaskData]) -> DataLoader:
        """The whole stream: each task's samples in a seeded random order, tasks one after the
        other, in a single pass."""
        parts = []
        for task in tasks:
            order = torch.randperm(len(task.y_train), generator=self._generator(task.task_id))
            parts.append(task.train_dataset(self.task_labels_at_train, order).tensors)
        stream = TensorDataset(*(torch.cat(columns) for columns in zip(*parts)))
        return minibatch_loader(stream, self.batch_size, shuffle=False, pin_memory=self.pins_batches)

    @property
    def pins_batches(self) -> bool:
        """Whether training minibatches are served in pinned memory: when training on a GPU."""
        return self.device.type == "cuda"

    # ----- training -----------------------------------------------------------------------

    @property
    def online_meter(self) -> OnlineAccuracyMeter | None:
        """The predict-then-train meter of the stage being trained, where the setting measures
        online accuracy (None elsewhere)."""
        return self._online_meter

    @property
    def epochs_per_task(self) -> int:
        return 1

    @property
    def shows_progress_bar(self) -> bool:
        """`--progress_bar` as given, else whether the output (where Lightning draws the bar)
        is a terminal: redrawn in place there, the bar would fill a log with thousands of lines."""
        if self.progress_bar is not None:
            return self.progress_bar
        return sys.stdout.isatty()

    def trainer_kwargs(self) -> dict[str, Any]:
        """How the shared Lightning learner's `Trainer` is built for this setting."""
        callbacks: list[Callback] = []
        if self._online_meter is not None:
            callbacks.append(self._online_meter)
        tracker = self._tracker
        return {
            "max_epochs": self.epochs_per_task,
            "accelerator": "gpu" if self.accelerator == "cuda" else self.accelerator,
            "devices": 1,
            "precision": self.precision,
            "enable_progress_bar": self.shows_progress_bar,
            "enable_model_summary": False,
            "enable_checkpointing": False,
            "logger": tracker.lightning_loggers() if tracker is not None else False,
            "callbacks": callbacks,
            "log_every_n_steps": 10,
            "num_sanity_val_steps": 0,
        }

    @property
    def device(self) -> torch.device:
        """Where methods should keep their model for evaluation."""
        return accelerator_device(self.accelerator)

    # ----- evaluation ---------------------------------------------------------------------

    def evaluate(self, method: Any, tasks: list[TaskData]) -> Evaluation:
        """Accuracy of `method` on every task's test set, the task-aware accuracy (scores
        restricted by the setting to the task's classes) where tasks have distinct classes, and
        the confusion matrix of its predictions over all of them."""
        accuracies, aware = [], []
        classes = self.num_classes
        confusion = torch.zeros(classes * classes, dtype=torch.int64)
        scored: dict[tuple[int, tuple[int, ...]], tuple[float, float]] = {}
        for task in tasks:
            # tasks that share one test set (a dataset's fixed one) are scored on it once, unless
            # the method is told which task it is scored as
            shared = (id(task.x_test), tuple(task.classes))
            if not self.task_labels_at_test and shared in scored:
                accuracies.append(scored[shared][0])
                aware.append(scored[shared][1])
                continue
            correct = aware_correct = 0
            mask = torch.zeros(self.num_classes, dtype=torch.bool)
            mask[task.classes] = True
            for start in range(0, len(task.y_test), self.eval_batch_size):
                x = float_inputs(task.x_test[start : start + self.eval_batch_size])
                y = task.y_test[start : start + self.eval_batch_size]
                task_labels = torch.full_like(y, task.task_id) if self.task_labels_at_test else None
                scores = method.predict(x, task_labels)
                if scores.shape != (len(y), self.num_classes):
                    raise RuntimeError(
                        f"{type(method).__name__}.predict returned shape {tuple(scores.shape)}, "
                        f"expected (batch, num_classes) = {(len(y), self.num_classes)}"
                    )
                scores = scores.detach().float().cpu()
                predicted = scores.argmax(1)
                correct += int((predicted == y).sum())
                confusion += torch.bincount(y * classes + predicted, minlength=classes * classes)
                masked = scores.masked_fill(~mask, float("-inf"))
                aware_correct += int((masked.argmax(1) == y).sum())
            accuracies.append(correct / len(task.y_test))
            aware.append(aware_correct / len(task.y_test))
            scored[shared] = (accuracies[-1], aware[-1])
        return Evaluation(accuracies, None if self.shared_output_space else aware, confusion.view(classes, classes))

    # ----- the run ------------------------------------------------------------------------

    def apply(self, method: Any, tracker: Any = None, resume: RunCheckpoint | None = None) -> Results:
        if not method.is_applicable(self):
            raise InapplicableMethodError(
                f"method {method.name!r} targets {method.target_setting.name!r} and does not "
                f"apply to {self.name!r}"
            )
        method.validate_for(self)
        self._tracker = tracker
        self._online_meter = None
        tasks = self._seeded_tasks()
        self._tasks = tasks
        self._pixel_inputs = bool(tasks) and all(task.x_train.dtype == torch.uint8 for task in tasks)
        nb_stages = self.nb_stages(tasks)
        # what a method may plan with: the training stages ahead (one per task where boundaries are known)
        self.stage_count = nb_stages
        method.configure(self)
        if resume is None:
            initial = self.evaluate(method, tasks).accuracies
            results = Results(self.name, method.name, accuracy_matrix=[], initial_accuracies=initial,
                              joint_training=method.joint_training,
                              evaluation_split=self.evaluation_split)
            finished = -1
        else:
            results, finished = self.restore(method, tracker, resume, nb_stages)
        start = time.perf_counter() - results.total_wall_time
        for stage, loaders in enumerate(self.training_stages(tasks)):
            if stage <= finished:  # resuming: trained before the interruption
                method.skip_stage(loaders)
                continue
            stage_start = time.perf_counter()
            self.train_stage(method, stage, loaders)
            startup = self.worker_startup_seconds()
            results.worker_startup_time += startup
            results.task_train_time.append(time.perf_counter() - stage_start - startup)
            evaluation = self.evaluate(method, tasks)
            results.accuracy_matrix.append(evaluation.accuracies)
            if evaluation.aware is not None:
                results.task_aware_matrix = (results.task_aware_matrix or []) + [evaluation.aware]
            results.confusion_matrix = evaluation.confusion.tolist()
            results.samples_seen.append(sum(len(loader.dataset) for loader in loaders) * self.epochs_per_task)
            self.record_stage_end(results, method, stage_start, start, nb_stages)
            if self._online_meter is not None:
                results.online_accuracy = self._online_meter.accuracy
            self.save_worker_states(method, stage, tracker)
            if tracker is not None:
                seen = stage + 1 if nb_stages == len(tasks) else len(tasks)
                tracker.on_stage_end(results, stage, nb_stages, seen, method)
        self._tracker = None
        return results

    def restore(self, method: Any, tracker: Any, resume: RunCheckpoint, nb_stages: int) -> tuple[Results, int]:
        """Resuming: see `Setting.restore_run`."""
        return self.restore_run(method, tracker, resume, nb_stages, len(self._tasks))

    def save_worker_states(self, method: Any, stage: int, tracker: Any) -> None:
        """After stage `stage`, before the tracker writes its checkpoint: where other processes
        train beside this one, each saves the state of its own that resuming needs. None here:
        the checkpoint holds the one process's state."""

    def worker_startup_seconds(self) -> float:
        """Of the stage just trained, the seconds spent starting and connecting worker processes
        rather than training (none here: one process)."""
        return 0.0

    def nb_stages(self, tasks: list[TaskData]) -> int:
        return 1

    def training_stages(self, tasks: list[TaskData]):
        """Yield, per training stage, the loaders trained on in that stage. Online: one stage,
        the whole stream."""
        yield [self.stream_loader(tasks)]

    def train_stage(self, method: Any, stage: int, loaders: list[DataLoader]) -> None:
        """Hand one stage's data to the method. Online: no hooks, one `fit` over the stream,
        measuring predict-then-train accuracy on the way."""
        from sylvan.settings.callbacks import OnlineAccuracyMeter

        self._online_meter = OnlineAccuracyMeter(method, self.task_labels_at_train)
        method.fit(loaders[0], None)

