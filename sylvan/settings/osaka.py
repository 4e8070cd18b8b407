"""OSAKA: online fast adaptation and knowledge accumulation (Caccia et al., NeurIPS 2020).

An online stream (no task boundaries, no task labels, one pass, every batch predicted before it
is learned from) with one more assumption: a **pre-training phase**, tasks of a pre-training
distribution that the method may learn from before the stream begins (`Method.pretrain`; a
method that knows nothing of it trains on them as on any data). The stream then switches
context at random, comes back to earlier contexts relabelled, and visits classes outside the
pre-training distribution (`sylvan.settings.data.osaka_streams`). What counts is the
predict-then-train accuracy over the stream, per mode, and over the first steps after a switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, List, Optional

import numpy as np

from sylvan.errors import ConfigurationError, require_in, unknown_name
from sylvan.settings.base import Setting, check_accelerator, check_precision
from sylvan.settings.data.checks import check_input_options
from sylvan.settings.data.datasets import DatasetSpec, get_dataset
from sylvan.settings.data.osaka_streams import MODES, POOLS, SHAPES, class_rows
from sylvan.settings.online import OnlineSetting

if TYPE_CHECKING:
    import torch

PAPER_MODE_PROBABILITIES = (0.5, 0.25, 0.25)  # the paper's Omniglot stream: pre-training, OOD 1, OOD 2
MAX_STEPS = 1_000_000  # stream steps and pre-training tasks: each planned before the run starts

# the online stream's options that a stream of contexts does not use, and why
UNUSED_OPTIONS = {
    "nb_tasks": "the stream's columns are its three modes",
    "initial_classes": "each context draws its classes from its mode's pool",
    "class_order": "each context draws its classes from its mode's pool",
    "random_class_order": "each context draws its classes from its mode's pool",
    "blurry": "contexts switch at random (--stationarity)",
    "batch_size": "a batch is --n_ways x --k_shots samples of the current context",
    "train_samples": "the pools are the datasets' whole splits",
    "validation_fraction": "what counts is the predict-then-train accuracy on the stream",
    "image_cache": "its pools are not image files",
}


@dataclass
class OsakaSetting(OnlineSetting):
    """After a pre-training phase, a stream of n-way k-shot batches whose context switches at
    random (with probability 1 - stationarity at each step) among tasks of the pre-training
    distribution and of two out-of-distribution pools, relabelled at every switch. Reports the
    predict-then-train accuracy overall, per mode, and at each step after a switch."""

    name: ClassVar[str] = "osaka"
    pretraining_phase: ClassVar[bool] = True
    unused_options: ClassVar[dict[str, str]] = UNUSED_OPTIONS

    # the pools of the three modes: digits (digits 0-4, then 5-9, then the synthetic classes:
    # nothing to read), mnist (MNIST 0-4, then 5-9, then the 8x8 digits at 28x28) or omniglot (the
    # paper's: Omniglot's characters, then MNIST, then Fashion-MNIST; the paper streams 10-way tasks)
    dataset: str = "digits"
    nb_tasks: int = 3  # not an option here: the stream's three modes
    stationarity: float = 0.9  # probability that the context stays at each step (the paper's p: 0.9, 0.98)
    # probabilities of the modes when the context switches: pre-training, out of distribution 1 and
    # 2 (default: the paper's 0.5 0.25 0.25)
    mode_probabilities: Optional[List[float]] = None
    n_ways: int = 5  # classes per context (the network's outputs)
    k_shots: int = 5  # samples of each class per batch (pre-training tasks have twice as many)
    stream_steps: int = 10_000  # batches of the stream
    pretraining_tasks: int = 2_000  # tasks of the pre-training phase (0: none)
    stream_stages: int = 1  # the stream cut into this many stages, each evaluated and checkpointed
    adaptation_window: int = 5  # steps after a switch whose accuracy is reported one by one

    def validate(self) -> None:
        Setting.validate(self)
        if self.dataset not in POOLS:
            raise unknown_name("OSAKA dataset", self.dataset, list(POOLS))
        check_accelerator(self.accelerator)
        check_precision(self.precision, self.accelerator)
        check_input_options(self, self.dataset_spec)
        if self.world_size > 1:  # before the machine's cores are counted: no machine runs it on more than one
            raise ConfigurationError(f"{self.name}'s stream is one sequence, predicted and learned batch after "
                                     "batch: it runs in one process (--devices 1)")
        self.check_parallel_options()
        self.check_memory_budget()
        require_in(self, 0, 1, "stationarity", high_open=True)
        probabilities = self.resolved_mode_probabilities
        if len(probabilities) != len(MODES) or min(probabilities) < 0 or abs(sum(probabilities) - 1) > 1e-6:
            raise ConfigurationError(f"--mode_probabilities takes {len(MODES)} probabilities ({', '.join(MODES)}) "
                                     f"that sum to 1, got {' '.join(map(str, probabilities))}")
        smallest = min(len(plan.classes) for plan in POOLS[self.dataset])
        if not 2 <= self.n_ways <= smallest:
            raise ConfigurationError(f"--n_ways must be from 2 to {smallest}, the classes of {self.dataset}'s "
                                     f"smallest pool, got {self.n_ways}")
        for name, low, high in (("k_shots", 1, 1000), ("stream_steps", 1, MAX_STEPS),
                                ("pretraining_tasks", 0, MAX_STEPS), ("adaptation_window", 1, 1000)):
            require_in(self, low, high, name)
        require_in(self, 1, self.stream_steps, "stream_stages")
        if self.eval_batch_size < 1:
            raise ConfigurationError("--eval_batch_size must be >= 1")

    @property
    def resolved_mode_probabilities(self) -> list[float]:
        given = self.mode_probabilities
        return list(PAPER_MODE_PROBABILITIES if given is None else given)

    # ----- the data -----------------------------------------------------------------------

    @property
    def dataset_spec(self) -> DatasetSpec:
        """The pre-training pool's dataset (its network, its input statistics), at the stream's shape."""
        from dataclasses import replace

        return replace(get_dataset(POOLS[self.dataset][0].dataset), input_shape=SHAPES[self.dataset])

    @property
    def num_classes(self) -> int:
        return self.n_ways

    def resolved_class_order(self) -> list[int]:
        return list(range(self.n_ways))

    def planned_stages(self) -> int:
        return self.stream_stages

    def seeded_pools(self) -> tuple[torch.Tensor, list[np.ndarray], torch.Tensor, list[list[np.ndarray]]]:
        """The pre-training pool's training inputs and its rows per class; the stream's inputs
        (every pool's test samples, one after the other) and each pool's rows per class. Loaded
        with the global generators seeded, as every setting's data are."""
        import torch

        from sylvan.settings.data.dataset_streams import build_tasks
        from sylvan.settings.data.loading import seeded_tasks

        def load(name: str) -> tuple[Any, Any]:
            return get_dataset(name).load(self.data_dir, None, self.seed)

        pools = seeded_tasks(self.seed, lambda: build_tasks(list(POOLS[self.dataset]), load, SHAPES[self.dataset],
                                                             self.seed))
        stream_pools, offset = [], 0
        for pool in pools:
            stream_pools.append(class_rows(pool.y_test - pool.classes[0], offset))
            offset += len(pool.y_test)
        first = pools[0]
        return (first.x_train, class_rows(first.y_train - first.classes[0]),
                torch.cat([pool.x_test for pool in pools]), stream_pools)

    # ----- the run ------------------------------------------------------------------------

    def stages(self) -> Any:
        """The pools, loaded now, and the plans of the pre-training phase and the stream
        (`sylvan.settings.osaka_stages.OsakaStages`)."""
        from sylvan.settings.osaka_stages import OsakaStages

        return OsakaStages(self)
