"""The data-parallel part of a run: its workers, their Fabric strategy (each worker's part of a
checkpoint is `sylvan.run.checkpointer`'s), and what to say when one of them fails.

Any supervised setting runs data-parallel with `--devices N` (or `--num_nodes`, torchrun,
SLURM): each worker trains on its own shard of every stage's data (`DataParallel.shard`),
evaluation is sharded (`sylvan.run.sharded_evaluation`), and only worker 0 writes the run's
folder. A run context holds one `DataParallel` for the run; the setting only holds its
options, checked here."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from sylvan.errors import ConfigurationError, RunFailedError, unknown_name
from sylvan.parallel.health import failure_report, is_distributed_failure
from sylvan.registry import METHODS
from sylvan.workers import Workers, group_is_up

REPLAY_SCOPES = ("global", "local")


def uses_cuda(accelerator: str) -> bool:
    """Whether `--accelerator` puts the workers on GPUs (NCCL) rather than CPU processes (gloo)."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class DataParallelOptions:
    """The options of data parallelism, which every supervised setting has (a dataclass its
    fields come from): with `devices x num_nodes` workers, each trains on its own shard of every
    stage's data, and replay methods draw from the union of all workers' buffers."""

    devices: int = 1  # data-parallel workers per node (processes on CPU, GPUs with --accelerator gpu)
    num_nodes: int = 1  # number of nodes (machines) taking part
    worker_timeout: float = 120.0  # seconds a worker waits for the others before the run stops with an error
    replay_sync: bool = False  # replay methods: exchange representatives synchronously (the baseline), not overlapped
    # replay methods on several workers: draw each step's replay from the union of every worker's
    # buffer (global), or each worker from its own buffer alone (local: the baseline, plain DDP)
    replay_scope: str = "global"

    @property
    def world_size(self) -> int:
        """The processes that train a run together."""
        return self.devices * self.num_nodes

    def check_parallel_options(self) -> None:
        """Refuse invalid or contradictory `--devices`, `--num_nodes`, `--worker_timeout`,
        `--replay_sync` and `--replay_scope`, and more GPU workers than this node has GPUs."""
        if self.devices < 1 or self.num_nodes < 1:
            raise ConfigurationError("--devices and --num_nodes must be >= 1")
        if self.worker_timeout <= 0:
            raise ConfigurationError(f"--worker_timeout must be > 0, got {self.worker_timeout}")
        if self.replay_scope not in REPLAY_SCOPES:
            raise unknown_name("replay scope", self.replay_scope, list(REPLAY_SCOPES))
        if self.replay_sync and self.replay_scope == "local":
            raise ConfigurationError("--replay_sync sets how the workers exchange representatives, which "
                                     "--replay_scope local never does")
        gpus = torch.cuda.device_count() if uses_cuda(self.accelerator) else 0
        if 0 < gpus < self.devices:
            raise ConfigurationError(
                f"--devices {self.devices} asks for {self.devices} GPU workers on this node, which has {gpus} "
                f"GPU(s); use --devices {gpus}, or --accelerator cpu for {self.devices} CPU workers"
            )
        cores = usable_cores()
        if not gpus and self.devices > cores:
            raise ConfigurationError(
                f"--devices {self.devices} asks for {self.devices} CPU worker processes on this node, which has "
                f"{cores} core(s) to run them: each worker is a process of its own, with its own copy of the "
                f"libraries and data; use --devices {cores} or fewer (or GPUs: --accelerator gpu)"
            )


def check_replay_options(setting: Any, method: Any) -> None:
    """Refuse --replay_sync and --replay_scope local for a method without a replay channel, which
    alone they set: the option would be silently ignored."""
    given = [flag for flag, value in (("--replay_sync", setting.replay_sync),
                                      ("--replay_scope local", setting.replay_scope == "local")) if value]
    if given and not method.replays:
        able = sorted(name for name, cls in METHODS.items() if cls.replays)
        raise ConfigurationError(
            f"{given[0]} has no effect on {method.name}: it sets how the distributed rehearsal buffer "
            f"draws representatives, which {', '.join(able)} use{'s' if len(able) == 1 else ''}"
        )


class DataParallel:
    """The workers of one data-parallel run, as this process sees them: the strategy the run's
    engine trains with, the replay channel that strategy exchanges, the worker processes this one
    started, and when they joined."""

    exit_wait = 5.0  # seconds a failing worker 0 gives the workers it started to exit

    def __init__(self, devices: int, num_nodes: int, worker_timeout: float, accelerator: str,
                 replay_sync: bool = False, replay_scope: str = "global", seed: int = 0) -> None:
        self.devices, self.num_nodes = devices, num_nodes
        # which worker this process is, and what the workers share
        self.workers = Workers(devices * num_nodes, seed, data_parallel=True)
        self.worker_timeout = worker_timeout
        self.on_cuda = uses_cuda(accelerator)
        self.replay_sync = replay_sync
        self.replays_globally = replay_scope == "global"
        self.channel: Any = None  # the global replay channel a method asked for, if any
        self.processes: list[Any] = []  # worker processes started on this machine (worker 0 only)
        self.joined = False  # every worker has joined the process group
        self.connected_at: float | None = None  # perf_counter() when they joined, in the stage under way
        self.stage_startup = 0.0

    @classmethod
    def of(cls, setting: Any) -> DataParallel:
        return cls(setting.devices, setting.num_nodes, setting.worker_timeout, setting.accelerator,
                   setting.replay_sync, setting.replay_scope, setting.seed)

    @property
    def world_size(self) -> int:
        return self.workers.world_size

    @property
    def rank(self) -> int:
        """This process's place among the workers."""
        return self.workers.rank

    # ----- training ---------------------------------------------------------------------

    def strategy(self) -> Any:
        """Fabric's DDP on a process group whose collectives give up after `worker_timeout`
        seconds instead of hanging; the distributed rehearsal strategy where a method replays
        through the run's global channel."""
        options = dict(process_group_backend="nccl" if self.on_cuda else "gloo",
                       timeout=timedelta(seconds=self.worker_timeout))
        if self.channel is not None:
            from sylvan.parallel.rehearsal_ddp import RehearsalDDPStrategy

            return RehearsalDDPStrategy(replay=self.channel, **options)
        from sylvan.parallel.fabric_package import fabric

        return fabric().strategies.DDPStrategy(**options)

    def start_workers(self, environment: Any) -> None:
        """Start this node's other workers, unless a launcher (torchrun, SLURM) did
        (`sylvan.parallel.launcher`)."""
        from sylvan.parallel.launcher import start_workers

        if not environment.creates_processes_externally:
            self.processes = start_workers(self.devices, self.num_nodes, environment.node_rank())

    def workers_joined(self) -> None:
        """Every worker has joined the process group."""
        self.connected_at = time.perf_counter()
        self.joined = True

    def shard(self, loader: Any) -> Any:
        """`loader` serving this worker's shard of its dataset: a `DistributedSampler` over
        it (shuffled where `loader` shuffles, with the run's seed; padded to equal shards), its
        other options kept."""
        from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

        if isinstance(loader.sampler, DistributedSampler):
            return loader
        sampler = DistributedSampler(loader.dataset, num_replicas=self.workers.world_size, rank=self.workers.rank,
                                     shuffle=isinstance(loader.sampler, RandomSampler),
                                     seed=int(os.environ.get("PL_GLOBAL_SEED", 0)))
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, drop_last=loader.drop_last,
                          collate_fn=loader.collate_fn, pin_memory=loader.pin_memory)

    def timed_stage(self, train: Any) -> None:
        """Run `train()` (one stage's fits); if it started the workers (the first fit does, unless
        a launcher such as torchrun did), remember how long that took before training began."""
        connected_before = group_is_up()
        started = time.perf_counter()
        self.connected_at = None
        train()
        started_workers = self.connected_at is not None and not connected_before
        self.stage_startup = self.connected_at - started if started_workers else 0.0

    # ----- failures ---------------------------------------------------------------------

    def translate_failure(self, error: Exception) -> BaseException | None:
        """What a run that raised `error` should raise instead: a `RunFailedError` naming the
        worker that died; None where `error` is not the workers'. (Where a signal stopped the run
        and the broken connection came of it, the run raises the signal: `sylvan.run.signals`.)"""
        if self.world_size == 1 or not is_distributed_failure(error):
            return None
        return RunFailedError(self.describe_failure(error))

    def describe_failure(self, error: BaseException) -> str:
        """The error message of a failed run: the worker that died and how, first (see
        `sylvan.parallel.health`), whether every worker had joined, where the results are."""
        lines = failure_report(error, self.local_workers(), self.exit_wait)
        if not self.joined:
            lines.append(f"Not all {self.world_size} workers joined within --worker_timeout {self.worker_timeout:g} s.")
            if self.num_nodes > 1:
                lines.append(
                    f"With --num_nodes {self.num_nodes}, start the same command on every node through a launcher "
                    "(torchrun, SLURM's srun) that tells each its node rank and the address of node 0."
                )
        lines.append("Results of the tasks finished before the failure are in the run folder.")
        return " ".join(lines)

    def local_workers(self) -> list[Any]:
        """The worker processes this one started."""
        return list(self.processes)
