"""Minibatches gathered from in-memory tensors: the same batches as a plain loader, served
without indexing sample by sample."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, TensorDataset

from sylvan.minibatches import GatheringConcatDataset, GatheringTensorDataset, minibatch_loader


def columns(n: int = 53) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    return (torch.rand(n, 1, 4, 4, generator=generator), torch.randint(0, 10, (n,), generator=generator),
            torch.full((n,), 3))


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("batch_size", [1, 10, 53, 64])
def test_same_batches_as_a_plain_loader(shuffle: bool, batch_size: int) -> None:
    data = columns()
    plain = DataLoader(TensorDataset(*data), batch_size=batch_size, shuffle=shuffle,
                       generator=torch.Generator().manual_seed(7))
    gathered = minibatch_loader(TensorDataset(*data), batch_size, shuffle, torch.Generator().manual_seed(7))
    expected, served = list(plain), list(gathered)
    assert len(served) == len(expected) == len(gathered)
    for want, got in zip(expected, served):
        assert len(got) == len(want)
        for a, b in zip(want, got):
            assert a.dtype == b.dtype and torch.equal(a, b)


def test_a_minibatch_is_one_gather_not_a_loop_over_samples() -> None:
    class CountingDataset(GatheringTensorDataset):
        per_sample = 0

        def __getitem__(self, index):
            CountingDataset.per_sample += 1
            return super().__getitem__(index)

    loader = minibatch_loader(CountingDataset(*columns()), 16, shuffle=True)
    assert sum(len(batch[1]) for batch in loader) == 53
    assert CountingDataset.per_sample == 0


def test_the_tensors_are_shared_not_copied() -> None:
    data = columns()
    loader = minibatch_loader(TensorDataset(*data), 8, shuffle=False)
    assert all(a is b for a, b in zip(loader.dataset.tensors, data))


@pytest.mark.parametrize("shuffle", [True, False])
def test_concatenated_tensor_datasets_give_the_same_batches_gathered(shuffle: bool) -> None:
    parts = [TensorDataset(*columns(n)) for n in (17, 0, 30, 9)]
    plain = DataLoader(ConcatDataset(parts), batch_size=8, shuffle=shuffle, generator=torch.Generator().manual_seed(2))
    loader = minibatch_loader(ConcatDataset(parts), 8, shuffle, torch.Generator().manual_seed(2))
    assert isinstance(loader.dataset, GatheringConcatDataset)
    served = list(loader)
    assert len(served) == len(plain)
    for want, got in zip(plain, served):
        assert all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(want, got))


def test_other_datasets_are_loaded_sample_by_sample() -> None:
    class Squares(Dataset):
        def __len__(self) -> int:
            return 20

        def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.tensor([float(index)]), torch.tensor(index * index)

    batches = list(minibatch_loader(Squares(), 8, shuffle=False))
    assert [len(batch[1]) for batch in batches] == [8, 8, 4]
    assert torch.equal(batches[1][1], torch.arange(8, 16) ** 2)
    mixed = ConcatDataset([TensorDataset(*columns(5)), TensorDataset(torch.rand(5, 3), torch.zeros(5))])
    assert not isinstance(minibatch_loader(mixed, 4, shuffle=False).dataset, GatheringConcatDataset)


def test_settings_pin_training_minibatches_only_when_training_on_a_gpu(monkeypatch) -> None:
    """On a GPU, pinned minibatches let their copy to the device be queued behind the previous
    step's kernels instead of waiting for them; on the CPU, pinning would be a wasted copy."""
    from sylvan.settings import ClassIncrementalSetting, OnlineSetting
    from tests.conftest import tiny_options

    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting), accelerator="cpu")
    dataset = TensorDataset(*columns())
    assert not setting.pins_batches and not setting.train_loader(dataset, shuffle=True).pin_memory
    monkeypatch.setattr(OnlineSetting, "device", property(lambda self: torch.device("cuda")))
    assert setting.pins_batches and setting.train_loader(dataset, shuffle=True).pin_memory


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_pinned_minibatches_are_the_same_batches_in_pinned_memory() -> None:
    data = columns()
    plain = list(minibatch_loader(TensorDataset(*data), 10, True, torch.Generator().manual_seed(7)))
    pinned = list(minibatch_loader(TensorDataset(*data), 10, True, torch.Generator().manual_seed(7), pin_memory=True))
    for want, got in zip(plain, pinned, strict=True):
        assert all(tensor.is_pinned() for tensor in got)
        assert all(torch.equal(a, b) for a, b in zip(want, got))


def pixel_columns(n: int = 29) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=generator), torch.arange(n)


def pixel_dataset(wrap: str) -> Dataset:
    """The `pixel_columns` as a gathering dataset ("tensor", "concat") or one read sample by sample ("subset")."""
    from torch.utils.data import Subset

    x, y = pixel_columns()
    return {
        "tensor": lambda: TensorDataset(x, y),
        "concat": lambda: ConcatDataset([TensorDataset(x[:10], y[:10]), TensorDataset(x[10:], y[10:])]),
        "subset": lambda: Subset(TensorDataset(x, y), list(range(len(y)))),
    }[wrap]()


@pytest.mark.parametrize("wrap", ["tensor", "concat", "subset"])
def test_uint8_pixels_come_out_as_the_floats_to_tensor_gives(wrap: str) -> None:
    """Tasks of uint8 images keep their pixels as uint8 (a quarter of float32's memory); every
    loader, gathering or not, hands out float32 inputs equal to pixels / 255, labels untouched."""
    from sylvan.minibatches import float_inputs

    x, y = pixel_columns()
    batches = list(minibatch_loader(pixel_dataset(wrap), 8, shuffle=False))
    inputs, labels = torch.cat([batch[0] for batch in batches]), torch.cat([batch[1] for batch in batches])
    assert inputs.dtype == torch.float32 and labels.dtype == torch.int64
    assert torch.equal(inputs, x.float() / 255) and torch.equal(labels, y)
    assert torch.equal(float_inputs(x), x.float() / 255)
    floats = torch.rand(3, 2)
    assert float_inputs(floats) is floats


@pytest.mark.parametrize("wrap", ["tensor", "concat", "subset"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_pixel_batches_serve_the_same_samples_as_uint8(wrap: str, shuffle: bool) -> None:
    """The learner's loader (`pixel_batches`) gives the batches the setting's loader would give,
    sample for sample and in the same order, with the pixels as stored: float_inputs of them
    are the setting's batches."""
    from sylvan.minibatches import float_inputs, pixel_batches

    dataset = pixel_dataset(wrap)

    def loader() -> DataLoader:
        return minibatch_loader(dataset, 8, shuffle=shuffle, generator=torch.Generator().manual_seed(3))

    batches, pixel_batched = list(loader()), list(pixel_batches(loader()))
    assert len(batches) == len(pixel_batched) == 4
    for floats, pixels in zip(batches, pixel_batched):
        assert pixels[0].dtype == torch.uint8
        assert torch.equal(float_inputs(pixels[0]), floats[0]) and torch.equal(pixels[1], floats[1])
    plain = DataLoader(TensorDataset(*pixel_columns()), batch_size=8)  # not built by minibatch_loader: as it is
    assert pixel_batches(plain) is plain


def test_pixel_batches_follow_the_loaders_generator_over_epochs() -> None:
    """Both loaders draw from their generators alike, epoch after epoch."""
    from sylvan.minibatches import pixel_batches

    x, y = pixel_columns()
    floats = minibatch_loader(TensorDataset(x, y), 8, shuffle=True, generator=torch.Generator().manual_seed(3))
    pixels = pixel_batches(minibatch_loader(TensorDataset(x, y), 8, shuffle=True,
                                            generator=torch.Generator().manual_seed(3)))
    for _ in range(3):
        assert [batch[1].tolist() for batch in floats] == [batch[1].tolist() for batch in pixels]


@pytest.mark.parametrize("wrap", ["tensor", "concat", "subset"])
def test_rows_at_indices_come_in_their_order_as_float_inputs(wrap: str) -> None:
    """What a method draws from a task's dataset at its end (`dataset_rows`): the samples at the
    indices asked for, in that order (repeats kept), pixels made float, gathered or not."""
    from sylvan.minibatches import dataset_rows

    x, y = pixel_columns()
    indices = [5, 0, len(y) - 1, 5, 11]
    rows = dataset_rows(pixel_dataset(wrap), indices)
    assert torch.equal(rows[0], x[indices].float() / 255) and torch.equal(rows[1], y[indices])
    gathering = GatheringTensorDataset(x, y)
    assert all(torch.equal(a, b) for a, b in zip(dataset_rows(gathering, indices), rows))


@pytest.mark.parametrize("samples", [1, 7, 20, 23, 100])
@pytest.mark.parametrize("batch_size", [1, 5, 10])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("generator", [True, False])
@pytest.mark.parametrize("gather_bytes", [None, 1])
def test_gathering_loaders_serve_what_a_dataloader_serves_with_the_same_draws(samples, batch_size, shuffle, drop_last,
                                                                            generator, gather_bytes, monkeypatch):
    """The same minibatches in the same order, epoch after epoch, and the generators (the loader's,
    and the global one where it has none) left in the same state after every epoch, whole or
    stopped early, as a `DataLoader` over the same dataset: a run's results do not change; whether
    the loader gathers many minibatches' rows at once (100 samples of batch 1: 32 at a time, then
    the rest) or one minibatch's (rows larger than what it gathers at once: `gather_bytes` 1)."""
    from torch.utils.data import DataLoader

    from sylvan import minibatches
    from sylvan.minibatches import GatheringLoader, GatheringTensorDataset, gathered_batch

    if gather_bytes is not None:
        monkeypatch.setattr(minibatches, "GATHER_BYTES", gather_bytes)

    dataset = GatheringTensorDataset(torch.arange(samples * 2).view(samples, 2), torch.arange(samples))

    def served(kind: type, stop: int | None) -> tuple[list, torch.Tensor, torch.Tensor]:
        torch.manual_seed(3)
        own = torch.Generator().manual_seed(7) if generator else None
        loader = kind(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=own,
                      collate_fn=gathered_batch)
        batches = []
        for _ in range(3):
            batches += [tuple(t.tolist() for t in batch) for batch in itertools.islice(loader, stop)]
        after = own.get_state() if own is not None else torch.empty(0)
        return batches, after, torch.get_rng_state()

    for stop in (None, 1, len(DataLoader(dataset, batch_size=batch_size, drop_last=drop_last))):
        expected, fast = served(DataLoader, stop), served(GatheringLoader, stop)
        assert fast[0] == expected[0]
        assert torch.equal(fast[1], expected[1]) and torch.equal(fast[2], expected[2])
