"""A stream of datasets: task-incremental learning where each task is a dataset (or a transformed
part of one) with its own label space, and past tasks' training data stay available.

The setting of NEVIS'22 (Bornschein et al., JMLR 2023) and of the CTrL streams (Veniat et al.,
ICLR 2021): disk is cheap and compute is not, so a method may revisit any past task's training
data (`RunContext.past_tasks`), never a future task's. No method sees a future task's data at
all: the evaluation after task k covers tasks 0 to k only, and the forward transfer of each task
is measured against an independent reference (the same method trained on that task alone),
not by evaluating tasks before they come.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from sylvan.errors import ConfigurationError, unknown_name
from sylvan.run.task_data import TaskData
from sylvan.settings.data import ctrl_streams, dataset_streams, streams
from sylvan.settings.data.datasets import DATASETS, DatasetSpec, get_dataset
from sylvan.settings.task_incremental import TaskIncrementalSetting

if TYPE_CHECKING:
    from sylvan.analysis.metrics import Results

DEFAULT_LENGTH = 20
MAX_STREAM_LENGTH = 1000  # ten times the longest published streams (NEVIS'22: 106 tasks; CTrL's S_long: 100)
DEFAULT_SOURCES = "digits,synthetic"


@functools.lru_cache(maxsize=64)
def planned_stream(stream: str | None, length: int | None, sources: str, seed: int
                   ) -> tuple[dataset_streams.TaskPlan, ...]:
    """The tasks of the stream `--stream` names (a CTrL stream, or datasets), or else of the one
    generated from `--stream_length`, `--stream_sources` and `--stream_seed`: drawn once per
    configuration, since the setting's facts (`num_classes`, `input_shape`), which methods may
    read at every step, derive from them."""
    if stream is not None and ctrl_streams.is_ctrl_stream(stream.strip()):
        return tuple(ctrl_streams.ctrl_plan(stream.strip()))
    if stream is not None:
        for name in (name.strip() for name in stream.split(",")):
            if name and name not in DATASETS:
                streams_ = ctrl_streams.stream_names()
                raise unknown_name("stream or dataset", name, [*streams_, *DATASETS],
                                   listed=f"the CTrL streams: {', '.join(streams_)}; or datasets separated by commas, "
                                          f"of: {', '.join(sorted(DATASETS))}")
        return tuple(dataset_streams.named_plan(stream))
    names = dataset_streams.stream_datasets(sources, "stream_sources")
    return tuple(dataset_streams.generated_plan(length or DEFAULT_LENGTH, names, seed))


@functools.lru_cache(maxsize=64)
def stream_spec(stream: str | None, length: int | None, sources: str, seed: int, only_task: int | None,
                side: int | None) -> DatasetSpec:
    """The stream (or its task `only_task` alone) as one dataset: the common shape of the whole
    stream's images (a task alone keeps it), the classes of the tasks trained on, and the
    backbone of the largest images (an MLP where they are resized)."""
    whole = planned_stream(stream, length, sources, seed)
    trained = whole if only_task is None else whole[only_task:only_task + 1]
    shape = dataset_streams.common_shape(list(whole), side)
    specs = [get_dataset(plan.dataset) for plan in whole]
    largest = max(specs, key=lambda spec: spec.input_shape[0] * spec.input_shape[1] * spec.input_shape[2])
    backbone = largest.default_backbone if shape[1:] == largest.input_shape[1:] else "mlp"
    return DatasetSpec("stream", shape, sum(len(plan.classes) for plan in trained), backbone,
                       load=dataset_streams.loaded_per_dataset)


@dataclass
class DatasetStreamSetting(TaskIncrementalSetting):
    """Each task is a dataset, or a transformed subset of a dataset's classes, with labels of its
    own; the task label is given at training and test time. A method may revisit the training
    data of every past task (`RunContext.past_tasks`). After each task, the method is evaluated
    on every task seen so far, and each task's forward transfer is its accuracy after it was
    learnt minus that of the same method trained on it alone."""

    name: ClassVar[str] = "dataset_stream"
    unused_options: ClassVar[dict[str, str]] = {
        "dataset": "the stream's datasets are --stream or --stream_sources",
        "initial_classes": "each task of a stream has classes of its own",
        "class_order": "each task of a stream has classes of its own",
        "random_class_order": "each task of a stream has classes of its own",
    }
    past_data_available: ClassVar[bool] = True
    evaluates_seen_tasks_only: ClassVar[bool] = True

    # the stream as datasets, one task each with all its classes, separated by commas (for example
    # mnist,fashion_mnist,cifar10), or a CTrL stream (s_minus, s_plus, s_in, s_out, s_pl, s_long, each
    # also as NAME_offline); default: a generated stream of --stream_length tasks
    stream: Optional[str] = None
    # the length of a generated stream (default 20 without --stream): tasks drawn from
    # --stream_sources, each a subset of 2 to 5 classes of one dataset under a transformation
    # (none, rotated, pixels permuted, inverted, recoloured), some with shuffled labels or few samples
    stream_length: Optional[int] = None
    stream_sources: str = DEFAULT_SOURCES  # the datasets a generated stream draws its tasks from
    stream_seed: int = 0  # the seed a generated stream is drawn with (the same stream for every --seed)
    image_size: Optional[int] = None  # side every task's images are resized to (default: the largest)
    only_task: Optional[int] = None  # train and evaluate on this task of the stream alone (from 0)
    # train the method on each task alone too, for each task's forward transfer (its accuracy after
    # the stream's training on it minus that of the method trained on it alone): doubles the
    # training; default: on in one process, off with several workers
    forward_transfer: Optional[bool] = field(default=None, metadata={"custom_args": {"const": True}})

    def validate(self) -> None:
        if self.stream is not None and self.stream_length is not None:
            raise ConfigurationError("give --stream (the datasets) or --stream_length (a generated stream), not both")
        if self.stream_length is not None and not 1 <= self.stream_length <= MAX_STREAM_LENGTH:
            raise ConfigurationError(
                f"--stream_length must be from 1 to {MAX_STREAM_LENGTH} tasks (each is planned before the run "
                f"starts, and the network gets an output per class of every task), got {self.stream_length}")
        if self.image_size is not None and self.image_size < 1:
            raise ConfigurationError(f"--image_size must be >= 1, got {self.image_size}")
        full = len(self.full_plan())
        if self.only_task is not None and not 0 <= self.only_task < full:
            raise ConfigurationError(f"--only_task must be a task of the stream, from 0 to {full - 1}, "
                                     f"got {self.only_task}")
        length = len(self.plan())
        if self.nb_tasks not in (length, full, 5):  # 5: the default, which the stream replaces
            raise ConfigurationError(f"--nb_tasks {self.nb_tasks} has no effect: the stream has {length} tasks")
        self.nb_tasks = length
        if self.forward_transfer and self.world_size > 1:
            raise ConfigurationError("--forward_transfer trains the method on each task alone, in one process; "
                                     "with several workers give --forward_transfer false")
        super().validate()

    # ----- the stream ---------------------------------------------------------------------

    def plan(self) -> list[dataset_streams.TaskPlan]:
        """The tasks the run trains on, before anything is loaded: the stream's, or its
        `only_task` alone."""
        full = self.full_plan()
        return full if self.only_task is None else [full[self.only_task]]

    def full_plan(self) -> list[dataset_streams.TaskPlan]:
        """The stream's tasks before anything is loaded (`sylvan.settings.data.dataset_streams`)."""
        return list(planned_stream(self.stream, self.stream_length, self.stream_sources, self.stream_seed))

    @property
    def dataset_spec(self) -> DatasetSpec:
        """The stream as one dataset (`stream_spec`)."""
        return stream_spec(self.stream, self.stream_length, self.stream_sources, self.stream_seed, self.only_task,
                           self.image_size)

    def class_increments(self) -> list[int]:
        return [len(plan.classes) for plan in self.plan()]

    def prepare_tasks(self) -> list[TaskData]:
        """Read each of the stream's datasets once and make its tasks."""
        plans = self.plan()

        def load(name: str) -> tuple[Any, Any]:
            spec = get_dataset(name)
            train, test = spec.load(self.data_dir, None, self.stream_seed)
            if self.train_samples is not None:
                train = streams.subsample(train, min(self.train_samples, len(train.get_data()[1])), self.seed,
                                          name=repr(name))
            if self.validation_fraction > 0:
                train, test = streams.holdout(train, self.validation_fraction, self.seed, name=repr(name))
            return train, test

        shape = dataset_streams.common_shape(self.full_plan(), self.image_size)
        return dataset_streams.build_tasks(plans, load, shape, self.stream_seed)

    # ----- the run -----------------------------------------------------------------------

    def after_stream(self, untrained: Any, results: Results, tracker: Any = None) -> None:
        """Where `forward_transfer` is on, train a fresh copy of the method on each task alone and
        record its accuracies (`Results.independent_accuracies`)."""
        wanted = self.world_size == 1 if self.forward_transfer is None else self.forward_transfer
        if wanted and self.only_task is None:
            if tracker is not None and tracker.verbose:
                print(f"[sylvan] forward transfer: training {untrained.name} on each of the {self.nb_tasks} tasks "
                      "alone (--forward_transfer false leaves this out)", flush=True)
            results.independent_accuracies = [self.alone(untrained, task).final_average_accuracy
                                              for task in range(self.nb_tasks)]

    def alone(self, method: Any, task: int) -> Results:
        """A fresh copy of `method` trained and evaluated on task `task` of the stream alone."""
        single = dataclasses.replace(self, only_task=task, forward_transfer=False, memory_budget=None)
        return single.apply(dataclasses.replace(method))
