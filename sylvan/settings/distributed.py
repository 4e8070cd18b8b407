"""Data-parallel class-incremental learning: the node of the tree for methods that rely on N workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sylvan.settings.class_incremental import ClassIncrementalSetting


@dataclass
class DistributedSetting(ClassIncrementalSetting):
    """Class-incremental learning run by `devices x num_nodes` data-parallel workers. Each worker
    trains on its own shard of every task (`DataParallel.shard`); evaluation is split
    across the workers and reduced, and only worker 0 writes results. Every supervised setting
    runs data-parallel with `--devices N` (`sylvan.parallel`); this one promises it, so that a
    method may rely on it, and runs two workers by default. `--devices N` starts the workers on
    this machine; under torchrun or SLURM the launcher starts them."""

    name: ClassVar[str] = "distributed"
    data_parallel: ClassVar[bool] = True

    devices: int = 2  # data-parallel workers per node (processes on CPU, GPUs with --accelerator gpu)
