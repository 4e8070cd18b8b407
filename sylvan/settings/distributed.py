"""Data-parallel class-incremental learning: N workers, each training on a shard of every task."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as dist

from sylvan.errors import ConfigurationError, RunFailedError, unknown_name
from sylvan.metrics import Results
from sylvan.parallel.health import failure_report, global_rank, interruption_behind, is_distributed_failure
from sylvan.registry import METHODS
from sylvan.settings.class_incremental import ClassIncrementalSetting
from sylvan.settings.online import Evaluation
from sylvan.settings.streams import TaskData

_UNKNOWN = object()  # the workers' checkpoint folder before worker 0 has said where it is


@dataclass
class DistributedSetting(ClassIncrementalSetting):
    """Class-incremental learning run by `devices x num_nodes` data-parallel workers. Each worker
    trains on its own shard of every task (Lightning's distributed sampler); evaluation is split
    across the workers and reduced, and only worker 0 writes results. Every method for
    class_incremental runs here unchanged, under DDP. `--devices N` starts the workers on this
    machine; under torchrun or SLURM the launcher starts them."""

    name: ClassVar[str] = "distributed"
    data_parallel: ClassVar[bool] = True

    devices: int = 2  # data-parallel workers per node (processes on CPU, GPUs with --accelerator gpu)
    num_nodes: int = 1  # number of nodes (machines) taking part
    worker_timeout: float = 120.0  # seconds a worker waits for the others before the run stops with an error
    replay_sync: bool = False  # replay methods: exchange representatives synchronously (the baseline), not overlapped
    # replay methods: draw each step's replay from the union of every worker's buffer (global), or
    # each worker from its own buffer alone (local: the baseline, plain DDP)
    replay_scope: str = "global"

    def validate(self) -> None:
        super().validate()
        if self.devices < 1 or self.num_nodes < 1:
            raise ConfigurationError("--devices and --num_nodes must be >= 1")
        if self.worker_timeout <= 0:
            raise ConfigurationError(f"--worker_timeout must be > 0, got {self.worker_timeout}")
        if self.replay_scope not in ("global", "local"):
            raise unknown_name("replay scope", self.replay_scope, ["global", "local"])
        if self.replay_sync and self.replay_scope == "local":
            raise ConfigurationError("--replay_sync sets how the workers exchange representatives, which "
                                     "--replay_scope local never does")
        gpus = torch.cuda.device_count() if self._uses_cuda() else 0
        if 0 < gpus < self.devices:
            raise ConfigurationError(
                f"--devices {self.devices} asks for {self.devices} GPU workers on this node, which has {gpus} GPU(s); "
                f"use --devices {gpus}, or --accelerator cpu for {self.devices} CPU workers"
            )

    def check_method(self, method: Any) -> None:
        """Refuse --replay_sync and --replay_scope local for a method without the distributed
        rehearsal buffer, which alone they set: the option would be silently ignored."""
        given = [flag for flag, value in (("--replay_sync", self.replay_sync),
                                          ("--replay_scope local", self.replay_scope == "local")) if value]
        if given and not hasattr(method, "global_replay"):
            able = sorted(name for name, cls in METHODS.items() if hasattr(cls, "global_replay"))
            raise ConfigurationError(
                f"{given[0]} has no effect on {method.name}: it sets how the distributed rehearsal buffer "
                f"draws representatives, which {', '.join(able)} use{'s' if len(able) == 1 else ''}"
            )

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    @property
    def rank(self) -> int:
        return global_rank()

    def strategy(self) -> Any:
        """The Lightning strategy the learner trains with: DDP, on a process group whose
        collectives give up after `worker_timeout` seconds instead of hanging; for a method that
        replays (it has `global_replay`), DDP with the distributed rehearsal buffer."""
        from lightning.pytorch.strategies import DDPStrategy

        from sylvan.buffers.distributed import DistributedRehearsalStrategy

        options = dict(
            process_group_backend="nccl" if self._uses_cuda() else "gloo",
            timeout=timedelta(seconds=self.worker_timeout),
        )
        if hasattr(self._method, "global_replay") and self.replay_scope == "global":
            strategy = DistributedRehearsalStrategy(replay=self._method.global_replay(self), **options)
        else:
            strategy = DDPStrategy(**options)
        self._strategy = strategy
        return strategy

    def _uses_cuda(self) -> bool:
        return self.accelerator in ("gpu", "cuda") or (self.accelerator == "auto" and torch.cuda.is_available())

    def trainer_kwargs(self) -> dict[str, Any]:
        kwargs = super().trainer_kwargs()
        kwargs.update(strategy=self.strategy(), devices=self.devices, num_nodes=self.num_nodes)
        from sylvan.settings.callbacks import RememberWorkers

        kwargs["callbacks"] = [*kwargs["callbacks"], RememberWorkers(self)]
        if not self._uses_cuda():
            kwargs["accelerator"] = "cpu"
        return kwargs

    def evaluate(self, method: Any, tasks: list[TaskData]) -> Evaluation:
        """Each worker scores its shard of every test set; counts are summed over the workers.
        Before the workers exist (the evaluation before training), one process scores it all."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return super().evaluate(method, tasks)
        rank, world = dist.get_rank(), dist.get_world_size()
        test_shards: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # tasks that share a test set share its shard
        for t in tasks:
            test_shards.setdefault(id(t.x_test), (t.x_test[rank::world], t.y_test[rank::world]))
        shards = [TaskData(t.task_id, t.x_train, t.y_train, *test_shards[id(t.x_test)], t.classes) for t in tasks]
        accuracies, aware, confusion = super().evaluate(method, shards)
        sizes = torch.tensor([len(s.y_test) for s in shards], dtype=torch.float64)
        counts = torch.stack([torch.tensor(accuracies, dtype=torch.float64) * sizes,
                              torch.tensor(aware or accuracies, dtype=torch.float64) * sizes, sizes])
        # one collective for both: the confusion counts are integers, exact in float64
        summed = torch.cat([counts.flatten(), confusion.flatten().double()]).to(self._collective_device())
        dist.all_reduce(summed)
        summed = summed.cpu()
        counts, confusion = summed[: counts.numel()].view(counts.shape), summed[counts.numel() :]
        totals = counts[2].clamp(min=1)
        accuracies = (counts[0] / totals).round(decimals=12).tolist()
        return Evaluation(accuracies, None if aware is None else (counts[1] / totals).round(decimals=12).tolist(),
                          confusion.round().long().view(-1, self.num_classes))

    _workers = ()  # worker processes started on this machine by Lightning (worker 0 only)
    _strategy = None  # the strategy of the latest Trainer (its launcher starts the workers in the first fit)
    _worker_exit_wait = 5.0  # seconds a failing worker 0 gives the workers it started to exit
    _method = None  # the method being run (set by `apply`)
    _connected_at = None  # perf_counter() at the current fit's setup hook (every worker has joined), or None
    _stage_startup = 0.0
    _workers_joined = False  # every worker has joined the process group, in this run's first fit or since
    _checkpoint_folder = _UNKNOWN  # where the workers write their checkpoints' parts; None: nowhere

    def train_stage(self, method: Any, stage: int, loaders: list[Any]) -> None:
        """Train the stage; if its `fit` started the workers (the first one does, unless a
        launcher such as torchrun did), remember how long that took before training began."""
        connected_before = dist.is_available() and dist.is_initialized()
        started = time.perf_counter()
        self._connected_at = None
        super().train_stage(method, stage, loaders)
        started_workers = self._connected_at is not None and not connected_before
        self._stage_startup = self._connected_at - started if started_workers else 0.0

    def worker_startup_seconds(self) -> float:
        """The seconds the stage just trained spent launching the workers and waiting for all of
        them to join the process group (their Python start-up and imports, on the first task):
        kept out of its training time, reported as `worker_startup_time` in runtime.json."""
        return self._stage_startup

    def save_worker_states(self, method: Any, stage: int, tracker: Any) -> None:
        """Every worker but 0 writes its part of the stage's checkpoint (its buffer, its
        generators: see `sylvan.checkpoints`) into the folder worker 0's tracker names; then all
        wait for each other, so that worker 0 writes the stage's own file only once every part
        is on disk."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        if self._checkpoint_folder is _UNKNOWN:  # only worker 0 has a tracker: it says where, once
            folder = [None if tracker is None or tracker.checkpoint_dir is None else str(tracker.checkpoint_dir)]
            dist.broadcast_object_list(folder, src=0, device=self._collective_device())
            self._checkpoint_folder = None if folder[0] is None else Path(folder[0])
        if self._checkpoint_folder is None:  # --save_checkpoints false
            return
        from sylvan.checkpoints import save_worker_checkpoint

        rank, world = dist.get_rank(), dist.get_world_size()
        if rank > 0:
            self._checkpoint_folder.mkdir(parents=True, exist_ok=True)
            save_worker_checkpoint(self._checkpoint_folder, stage, rank, world, method)
        dist.all_reduce(torch.zeros(1, device=self._collective_device()))  # a barrier on either backend

    def _collective_device(self) -> torch.device:
        """Where tensors of this process group's collectives live: NCCL's on this worker's GPU."""
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def apply(self, method: Any, tracker: Any = None, resume: Any = None) -> Results:
        """Run as one of the workers. If any worker dies or raises, the others stop within
        `worker_timeout` seconds (usually at once: the collectives see the broken connection),
        and worker 0 reports which worker failed; finished tasks are already on disk."""
        self._method = method
        self._checkpoint_folder = _UNKNOWN
        try:
            return super().apply(method, tracker, resume)
        except Exception as error:
            if self.world_size == 1 or not is_distributed_failure(error):
                raise
            stop = interruption_behind(error)
            if stop is not None:  # stopped by a signal; the broken connection came of it
                raise stop from None
            raise RunFailedError(self._describe_failure(error)) from error

    def _describe_failure(self, error: BaseException) -> str:
        """The error message of a failed run: the worker that died and how, first (see
        `sylvan.parallel.health`), whether every worker had joined, where the results are."""
        lines = failure_report(error, self._local_workers(), self._worker_exit_wait)
        if not self._workers_joined:
            lines.append(f"Not all {self.world_size} workers joined within --worker_timeout {self.worker_timeout:g} s.")
            if self.num_nodes > 1:
                lines.append(
                    f"With --num_nodes {self.num_nodes}, start the same command on every node through a launcher "
                    "(torchrun, SLURM's srun) that tells each its node rank and the address of node 0."
                )
        lines.append("Results of the tasks finished before the failure are in the run folder.")
        return " ".join(lines)

    def _local_workers(self) -> list[Any]:
        """The worker processes this one started: those the first fit's set-up recorded, or,
        where the workers never all joined (no set-up ran), those the latest launcher started."""
        if self._workers:
            return list(self._workers)
        launched = getattr(getattr(self._strategy, "launcher", None), "procs", None)
        return list(launched or ())
