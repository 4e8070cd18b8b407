"""The run context (sylvan/run/context.py): what a method asks the run for."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from sylvan.run.context import RunContext
from sylvan.settings import ClassIncrementalSetting


def test_a_method_asks_the_run_for_the_loaders_of_its_own_fits():
    """`run.loader` shuffles in the order a `DataLoader` seeded with the run's seed and the
    method's offset gives, the same for the same offset and another for another."""
    setting = ClassIncrementalSetting(dataset="digits", accelerator="cpu", seed=4)
    run = RunContext.standalone(setting)
    data = TensorDataset(torch.arange(30, dtype=torch.float32).view(30, 1), torch.arange(30))

    def labels(loader) -> list[list[int]]:
        return [batch[1].tolist() for batch in loader]

    served = labels(run.loader(data, 8, seed_offset=5))
    expected = labels(DataLoader(data, 8, shuffle=True, generator=torch.Generator().manual_seed(4 * 1000 + 5)))
    assert served == expected == labels(run.loader(data, 8, seed_offset=5))
    assert served != labels(run.loader(data, 8, seed_offset=6))
    assert labels(run.loader(data, 8, seed_offset=5, shuffle=False))[0] == list(range(8))
