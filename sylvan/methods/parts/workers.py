"""What a method shares with the other data-parallel workers beyond DDP's averaged gradient:
quantities each worker computes from its own samples and that must agree on every worker (a
gradient taken past DDP, the running statistics of a network DDP does not wrap). In one process
each is left as it is."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn


def worker_count() -> int:
    """The number of data-parallel workers (1 where no process group is running)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def mean_over_workers(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` averaged over the data-parallel workers in place (unchanged in one process), as
    the minibatch gradient is: every worker then projects it the same way."""
    if worker_count() > 1:
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor


def sum_over_workers(*tensors: torch.Tensor) -> None:
    """Sum `tensors` over the data-parallel workers in place, in one collective (unchanged in one
    process): per-class sums and counts each worker takes from its own samples, which every worker
    then divides alike."""
    if worker_count() > 1:
        exchanged_in_one_collective(list(tensors), dist.all_reduce)


def average_statistics_over_workers(*modules: nn.Module) -> None:
    """Average the floating-point buffers of `modules` (batch norm's running mean and variance)
    over the workers, in one collective. A copy of the network that DDP does not wrap, run in
    training mode on each worker's own samples, tracks statistics of those samples alone; averaged
    after every update, a running mean is the moving average of the global batch's means, the
    same on every worker (a running variance, of the workers' variances)."""
    if worker_count() == 1:
        return
    exchanged_in_one_collective(
        [b for module in modules for b in module.buffers() if b.is_floating_point()], mean_over_workers
    )


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


def concatenated_over_workers(tensor: torch.Tensor) -> torch.Tensor:
    """Every worker's `tensor` concatenated along its first dimension in the order of the workers'
    ranks, the same on every worker; the workers' tensors may differ in length (not in their other
    dimensions or dtype). `tensor` itself in one process. For what each worker holds a part of
    (its buffer) and every worker must learn from alike."""
    if worker_count() == 1:
        return tensor
    length = torch.tensor([len(tensor)], device=tensor.device)
    lengths = [torch.zeros_like(length) for _ in range(dist.get_world_size())]
    dist.all_gather(lengths, length)
    longest = max(int(n) for n in lengths)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(n)] for part, n in zip(parts, lengths)])


def copy_from_first_worker(*modules: nn.Module) -> None:
    """Overwrite the floating-point parameters and buffers of `modules` with the first worker's, in one
    collective: for weights every worker computed alike outside DDP, so that they agree to the
    last bit whatever the order each device summed in. Nothing in one process."""
    if worker_count() == 1:
        return
    exchanged_in_one_collective(
        [t for module in modules for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()],
        lambda flat: dist.broadcast(flat, src=0),
    )


def worker_rank() -> int:
    """This worker's rank (0 where no process group is running)."""
    return dist.get_rank() if worker_count() > 1 else 0


def owner_of(job: int) -> int:
    """The worker that trains the `job`-th of several networks that the workers share out (experts,
    candidates): the jobs dealt round-robin, the first to the first worker."""
    return job % worker_count()


def owns(job: int) -> bool:
    """Whether this worker trains the `job`-th network (every one, in one process)."""
    return owner_of(job) == worker_rank()


def copied_from_owners(modules: list[nn.Module]) -> None:
    """Give every worker the weights and buffers of each of `modules` as its owner (`owner_of` its
    position) trained it: one broadcast per module and kind of tensor (floating point; integer
    counters). Nothing in one process."""
    if worker_count() == 1:
        return
    for job, module in enumerate(modules):
        tensors, owner = [*module.parameters(), *module.buffers()], owner_of(job)

        def from_owner(flat: torch.Tensor, owner: int = owner) -> None:
            dist.broadcast(flat, src=owner)

        for floating in (True, False):
            exchanged_in_one_collective([t for t in tensors if t.is_floating_point() is floating], from_owner)
