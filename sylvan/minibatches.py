"""Minibatches from tensors held in memory, one gather per tensor.

A `DataLoader` over a plain `TensorDataset` indexes the dataset once per sample and stacks the
samples again (`default_collate`): about 0.5 ms per minibatch of 128 on one CPU core, where an
MLP's whole training step takes 1.5 ms. `GatheringTensorDataset` answers the
loader's request for a minibatch's indices at once (`__getitems__`) with one indexing per tensor,
and `minibatch_loader` pairs it with a collate function that keeps that batch as it is. The
sampler, and so the order of the samples for a given seed, is the loader's own: the batches are
the same, value for value, only served faster (and a data-parallel run can still swap in a
distributed sampler).

`Batch` is the training minibatch a method's step receives, as the engine hands it over.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
from torch.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    default_collate,
)


class GatheringTensorDataset(TensorDataset):
    """A `TensorDataset` that serves a minibatch of indices with one gather per tensor."""

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(tensor.index_select(0, index) for tensor in self.tensors)


class GatheringConcatDataset(ConcatDataset):
    """A `ConcatDataset` of `TensorDataset`s (with the same columns) that serves a minibatch of
    indices with one gather per part and column, rows in the order asked for."""

    def __init__(self, datasets: Sequence[TensorDataset]) -> None:
        super().__init__(datasets)
        self._starts = torch.tensor([0, *self.cumulative_sizes[:-1]])

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        part_of = torch.bucketize(index, self._starts, right=True) - 1
        columns = [torch.empty((len(index), *tensor.shape[1:]), dtype=tensor.dtype)
                   for tensor in self.datasets[0].tensors]
        for part in part_of.unique().tolist():
            rows = (part_of == part).nonzero().squeeze(1)
            local = index.index_select(0, rows) - self._starts[part]
            for column, tensor in zip(columns, self.datasets[part].tensors):
                column[rows] = tensor.index_select(0, local)
        return tuple(columns)


GATHER_BYTES = 4 << 20  # what the rows of the minibatches gathered at once take at most


class GatheringLoader(DataLoader):
    """A `DataLoader` of a gathering dataset that serves the same minibatches, in the same order,
    with the same draws from the same generators, as `DataLoader` does, with less Python per
    minibatch (about 25 us of the 35 us a `DataLoader` spends on a minibatch of 10 on a CPU core,
    where an MLP's whole step takes 400 us): the order is taken as an index tensor, the rows of
    several minibatches gathered at once, and each minibatch served as a slice of them, rather
    than a list of indices made per sample and per minibatch. It applies in the main
    process (no loader workers), unpinned, with a random (without replacement, one pass) or
    sequential sampler and the default batching; elsewhere it is a `DataLoader`."""

    def __iter__(self) -> Any:
        if not self._serves_slices():
            return super().__iter__()
        return self._slices()

    def _serves_slices(self) -> bool:
        sampler = self.sampler
        plain_random = type(sampler) is RandomSampler and not sampler.replacement \
            and sampler.num_samples == len(self.dataset)
        return (self.num_workers == 0 and not self.pin_memory and type(self.batch_sampler) is BatchSampler
                and self.batch_sampler.sampler is sampler and (plain_random or type(sampler) is SequentialSampler)
                and isinstance(self.dataset, (GatheringTensorDataset, GatheringConcatDataset)))

    def _minibatches_per_gather(self) -> int:
        """How many minibatches one indexing of the dataset's columns gathers: as many as fit
        in `GATHER_BYTES`, so that a minibatch is a slice of rows already gathered, at most 32."""
        row_bytes = sum(tensor[:1].nbytes for tensor in self.dataset.__getitems__(torch.zeros(1, dtype=torch.long)))
        return max(1, min(32, GATHER_BYTES // max(1, row_bytes * self.batch_size)))

    def _slices(self) -> Any:
        # what creating a DataLoader iterator draws first: its base seed, from the loader's generator
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        return self._minibatches()

    def _minibatches(self) -> Any:
        n, size = len(self.dataset), self.batch_size
        sampler = self.sampler
        generator = None
        if type(sampler) is RandomSampler:  # the sampler's draws, when its first index is asked for
            generator = sampler.generator
            if generator is None:
                seed = int(torch.empty((), dtype=torch.int64).random_().item())
                generator = torch.Generator()
                generator.manual_seed(seed)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        full = n - n % size
        span = size * self._minibatches_per_gather() if full else size
        for first in range(0, full, span):
            rows = self.dataset.__getitems__(order[first:min(first + span, full)])
            # each column cut into its minibatches' views in one call, not sliced per minibatch
            for minibatch in zip(*(column.split(size) for column in rows)):
                yield self.collate_fn(minibatch)
        # a random sampler asked past its last index draws one more (empty) order: the batching
        # asks so to end a partial last minibatch, or when asked for a minibatch past the last
        if generator is not None:
            torch.randperm(n, generator=generator)
        if full < n and not self.drop_last:
            yield self.collate_fn(self.dataset.__getitems__(order[full:]))


def float_inputs(x: torch.Tensor) -> torch.Tensor:
    """Inputs as a network takes them: uint8 pixels (how tasks of uint8 images are stored, at a
    quarter of float32's memory) become float32 in [0, 1], the values `ToTensor` gives; any
    other tensor is returned as it is."""
    if x.dtype != torch.uint8:
        return x
    values = x.to(torch.get_default_dtype())
    if values.is_cpu:
        return values.div_(255).float()
    # On CUDA, dividing by a host scalar multiplies by its reciprocal, which can differ from the
    # quotient in the last bit; a divisor on the device takes the correctly rounded division,
    # so pixels decode to the CPU's values bit for bit.
    return values.div_(torch.full((), 255, dtype=values.dtype, device=values.device)).float()


def gathered_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The collate function of a `GatheringTensorDataset`: its minibatch is already stacked;
    uint8 pixels become float inputs (`float_inputs`)."""
    return tuple(float_inputs(column) for column in batch)


def collated_batch(samples: list[Any]) -> Any:
    """`default_collate`, then uint8 pixels made float inputs, for datasets served sample by sample."""
    batch = default_collate(samples)
    if isinstance(batch, (list, tuple)):
        return type(batch)(float_inputs(column) if isinstance(column, torch.Tensor) else column for column in batch)
    return float_inputs(batch) if isinstance(batch, torch.Tensor) else batch


def pixel_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The collate function of `pixel_batches` over a `GatheringTensorDataset`: the minibatch as
    it is stored, uint8 pixels included."""
    return batch


def pixel_batches(loader: DataLoader) -> DataLoader:
    """`loader` serving uint8 image inputs as they are stored, with the same samples in the same
    order (the same sampler and generator, drawn from alike) and the same pinning, for a consumer
    that makes them float on the device it computes on (the learner: a quarter of the bytes to
    move to a GPU) and keeps the pixels for a buffer that stores pixels. A loader that
    `minibatch_loader` did not build is returned as it is."""
    keep = {gathered_batch: pixel_batch, collated_batch: default_collate}.get(loader.collate_fn)
    if keep is None:
        return loader
    return type(loader)(
        loader.dataset, batch_size=loader.batch_size, sampler=loader.sampler, drop_last=loader.drop_last,
        generator=loader.generator, pin_memory=loader.pin_memory, collate_fn=keep,
    )


def minibatch_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A loader of minibatches of `dataset` in the order `DataLoader(dataset, batch_size,
    shuffle, generator=generator)` gives. A `TensorDataset`, or a `ConcatDataset` of them, is
    served by gathering (the tensors are shared, not copied); any other dataset is loaded sample
    by sample as usual. Either way, inputs stored as uint8 pixels come out as float32 in [0, 1].
    `pin_memory` (for training on a GPU) puts each minibatch in pinned memory, so that its copy
    to the GPU is queued without making the host wait for the previous step's kernels (see
    `sylvan.transfer`)."""
    kwargs: dict[str, Any] = {
        "batch_size": batch_size, "shuffle": shuffle, "generator": generator, "pin_memory": pin_memory,
        "collate_fn": collated_batch,
    }
    if isinstance(dataset, TensorDataset):
        if not isinstance(dataset, GatheringTensorDataset):
            dataset = GatheringTensorDataset(*dataset.tensors)
        kwargs["collate_fn"] = gathered_batch
    elif isinstance(dataset, ConcatDataset) and same_columns(dataset.datasets):
        if not isinstance(dataset, GatheringConcatDataset):
            dataset = GatheringConcatDataset(dataset.datasets)
        kwargs["collate_fn"] = gathered_batch
    gathering = isinstance(dataset, (GatheringTensorDataset, GatheringConcatDataset))
    return (GatheringLoader if gathering else DataLoader)(dataset, **kwargs)


def dataset_rows(dataset: Dataset, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """The samples of a map-style dataset of tuples at `indices`, stacked in that order as one
    minibatch (uint8 pixels made float inputs): gathered at once from tensors in memory (a
    `TensorDataset`, or a `ConcatDataset` of them), fetched one by one from any other dataset."""
    if isinstance(dataset, TensorDataset) and not isinstance(dataset, GatheringTensorDataset):
        dataset = GatheringTensorDataset(*dataset.tensors)
    elif isinstance(dataset, ConcatDataset) and not isinstance(dataset, GatheringConcatDataset) \
            and same_columns(dataset.datasets):
        dataset = GatheringConcatDataset(dataset.datasets)
    if isinstance(dataset, (GatheringTensorDataset, GatheringConcatDataset)):
        return gathered_batch(dataset.__getitems__(list(indices)))
    return tuple(collated_batch([dataset[i] for i in indices]))


def same_columns(datasets: Sequence[Dataset]) -> bool:
    """Whether `datasets` are `TensorDataset`s on the CPU whose columns agree in shape and dtype."""
    if not datasets or not all(isinstance(part, TensorDataset) for part in datasets):
        return False
    first = datasets[0].tensors
    return all(
        len(part.tensors) == len(first)
        and all(a.shape[1:] == b.shape[1:] and a.dtype == b.dtype and a.is_cpu for a, b in zip(part.tensors, first))
        for part in datasets
    )


class Batch(NamedTuple):
    """A training minibatch of float inputs, labels, and task labels where the setting gives
    them. Where the setting augments inputs, `x` is what the network trains on and `stored_x`
    the inputs as they came, which is what a buffer keeps. Images stored as uint8 pixels reach
    a method as float32 k / 255: pixels are decoded by the data loading and encoded again by
    the buffers that keep them (`RehearsalBuffer.pixel_fields`), never by a method."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor | None = None
    stored_x: torch.Tensor | None = None

    def fields(self) -> dict[str, torch.Tensor]:
        """The batch as named tensors (what a rehearsal buffer stores: inputs not augmented)."""
        x = self.x if self.stored_x is None else self.stored_x
        out = {"x": x, "y": self.y}
        if self.t is not None:
            out["t"] = self.t
        return out
