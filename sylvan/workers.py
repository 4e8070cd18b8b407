"""The workers of a run, in one place: which worker this process is, how many train the run,
which of them owns a job, the collectives a method needs beyond DDP's averaged gradient, and the
seeds of what each worker draws for itself. It is the one module that asks `torch.distributed`
who this process is; the run keeps one `Workers` (`RunContext.workers`) and hands it, or what it
says, to what needs it: the methods and their parts, the checkpointer, the sharded evaluation, the
augmentations and the replay exchange. In one process every collective leaves its tensors as
they are."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

# the seeds of per-worker draws: `Workers.seed` (a method's own choices) and `Workers.draw_seed`
# (the augmentations' and the replay exchange's per-step draws) keep the formulas their draws were
# recorded with, so that a run's results stay as they were
SEED_PRIME, RANK_STRIDE = 7919, 1_000_003


def group_is_up() -> bool:
    """Whether this process has joined a process group (`torch.distributed` initialized)."""
    return dist.is_available() and dist.is_initialized()


def process_rank() -> int:
    """This process's rank: from the process group once it is up, else from the launcher's
    environment (Lightning, torchrun and SLURM set these before the process group exists), else 0."""
    if group_is_up():
        return dist.get_rank()
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def group_size() -> int:
    """The processes in this process's group (1 where none is up)."""
    return dist.get_world_size() if group_is_up() else 1


class Workers:
    """The data-parallel workers of one run, as this process sees them.

    `world_size` is what the run trains on (`--devices` x `--num_nodes`; where not given, the
    process group's size, for a part used outside a run); `rank` is this process's place among
    them: in a data-parallel run (`data_parallel`: by default, where more than one process
    trains), what the process group or the launcher's environment says; 0 in a run of one process,
    whatever a launcher's environment says. The collectives act
    once the workers' process group is up with more than one worker in it, and leave their
    tensors as they are otherwise (one process, or a method set up before the workers joined)."""

    def __init__(self, world_size: int | None = None, seed: int = 0, data_parallel: bool | None = None) -> None:
        self.planned_size = world_size
        self.run_seed = seed
        self.data_parallel = data_parallel

    @property
    def world_size(self) -> int:
        """The processes that train the run together."""
        return group_size() if self.planned_size is None else self.planned_size

    @property
    def rank(self) -> int:
        """This process's place among the workers; 0 writes the results, checkpoints and logs."""
        data_parallel = self.world_size > 1 if self.data_parallel is None else self.data_parallel
        return process_rank() if data_parallel else 0

    @property
    def connected(self) -> bool:
        """Whether the workers' process group is up with more than one worker in it."""
        return group_size() > 1

    def collective_device(self) -> torch.device:
        """Where the tensors of the workers' collectives live: NCCL's on this worker's GPU."""
        if group_is_up() and dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    # ----- sharing work out --------------------------------------------------------------

    def owner_of(self, job: int) -> int:
        """The worker that trains the `job`-th of several networks the workers share out (experts,
        candidates): the jobs dealt round-robin among the connected workers, the first to worker 0."""
        return job % group_size()

    def owns(self, job: int) -> bool:
        """Whether this worker trains the `job`-th network (every one, in one process)."""
        return self.owner_of(job) == (dist.get_rank() if self.connected else 0)

    def copied_from_owners(self, modules: list[nn.Module]) -> None:
        """Give every worker the weights and buffers of each of `modules` as its owner (`owner_of`
        its position) trained it: one broadcast per module and kind of tensor (floating point;
        integer counters). Nothing in one process."""
        if not self.connected:
            return
        for job, module in enumerate(modules):
            tensors, owner = [*module.parameters(), *module.buffers()], self.owner_of(job)

            def from_owner(flat: torch.Tensor, owner: int = owner) -> None:
                dist.broadcast(flat, src=owner)

            for floating in (True, False):
                exchanged_in_one_collective([t for t in tensors if t.is_floating_point() is floating], from_owner)

    # ----- collectives -------------------------------------------------------------------

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` averaged over the workers in place, as the minibatch gradient is: every worker
        then projects it the same way."""
        if self.connected:
            dist.all_reduce(tensor)
            tensor /= group_size()
        return tensor

    def sum(self, *tensors: torch.Tensor) -> None:
        """Sum `tensors` over the workers in place, in one collective: per-class sums and counts
        each worker takes from its own samples, which every worker then divides alike."""
        if self.connected:
            exchanged_in_one_collective(list(tensors), dist.all_reduce)

    def sum_to_cpu(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over the workers (on the collectives' device), back on the CPU."""
        if not self.connected:
            return values.cpu()
        summed = values.to(self.collective_device())
        dist.all_reduce(summed)
        return summed.cpu()

    def average_statistics(self, *modules: nn.Module) -> None:
        """Average the floating-point buffers of `modules` (batch norm's running mean and variance)
        over the workers, in one collective. A copy of the network that DDP does not wrap, run in
        training mode on each worker's own samples, tracks statistics of those samples alone;
        averaged after every update, a running mean is the moving average of the global batch's
        means, the same on every worker (a running variance, of the workers' variances)."""
        if self.connected:
            exchanged_in_one_collective([b for module in modules for b in module.buffers() if b.is_floating_point()],
                                        self.mean)

    def concatenated(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every worker's `tensor` concatenated along its first dimension in the order of the
        workers' ranks, the same on every worker; the workers' tensors may differ in length (not
        in their other dimensions or dtype). For what each worker holds a part of (its buffer)
        and every worker must learn from alike."""
        if not self.connected:
            return tensor
        length = torch.tensor([len(tensor)], device=tensor.device)
        lengths = [torch.zeros_like(length) for _ in range(group_size())]
        dist.all_gather(lengths, length)
        longest = max(int(n) for n in lengths)
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in lengths]
        dist.all_gather(parts, padded)
        return torch.cat([part[: int(n)] for part, n in zip(parts, lengths)])

    def copy_from_first(self, *modules: nn.Module) -> None:
        """Overwrite the floating-point parameters and buffers of `modules` with worker 0's, in one
        collective: for weights every worker computed alike outside DDP, so that they agree to the
        last bit whatever the order each device summed in."""
        if self.connected:
            exchanged_in_one_collective(
                [t for module in modules for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()],
                lambda flat: dist.broadcast(flat, src=0),
            )

    def from_first(self, value: Any) -> Any:
        """Worker 0's `value` (a picklable object), on every worker."""
        if not self.connected:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.collective_device())
        return box[0]

    def wait_for_each_other(self) -> None:
        """Return once every worker has reached this point (a barrier on either backend)."""
        if self.connected:
            dist.all_reduce(torch.zeros(1, device=self.collective_device()))

    # ----- seeds -------------------------------------------------------------------------

    def seed(self, offset: int = 0) -> int:
        """The seed of what this worker draws for itself alone (its local memory's choices and
        draws): the run's seed + `offset` in one process and on worker 0, another seed on every
        other worker. With one seed everywhere the workers would choose in lockstep: slot k of
        every worker's reservoir filled at the same point of its shard, and a draw of the same
        slots from each buffer would pick samples of the same age (the same task) from each,
        which a uniform draw from their union would not."""
        return worker_seed(self.run_seed, self.rank, offset)

    def draw_seed(self, offset: int = 0, seed: int | None = None) -> int:
        """The seed of a stream of per-step draws made on every worker (an augmentation's, the
        replay exchange's picks), distinct per worker and per `offset`; from `seed` where given
        (a part made outside a run), else the run's."""
        return (self.run_seed if seed is None else seed) * SEED_PRIME + offset + self.rank


def worker_seed(seed: int, rank: int, offset: int = 0) -> int:
    """`Workers.seed` of worker `rank` in a run of seed `seed`."""
    return seed + offset if rank == 0 else (seed + offset) * SEED_PRIME + RANK_STRIDE * rank


def exchanged_in_one_collective(tensors: list[torch.Tensor], collective: Callable[[torch.Tensor], object]) -> None:
    """Run `collective` (in place, on every worker) once on `tensors` flattened into one, and copy
    its result back into each: one message for many small tensors. Nothing when there are none."""
    if not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    collective(flat)
    offset = 0
    with torch.no_grad():
        for tensor in tensors:
            tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()
