"""The predict-then-train meter on data-parallel workers counts each sample of the stream once:
`DistributedSampler` pads the shards to equal sizes with repeated samples, which are not the stream's."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from sylvan.run.callbacks import OnlineAccuracyMeter


class Perfect:
    """A method whose predictions are always right (the labels are the inputs' first feature)."""

    def predict(self, x, task_labels=None):
        return torch.nn.functional.one_hot(x[:, 0].long(), 10).float()


@pytest.mark.parametrize(("samples", "workers"), [(5, 2), (7, 3), (6, 3), (1, 2)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_the_workers_count_each_sample_of_the_stream_once(samples, workers, shuffle):
    labels = torch.arange(samples) % 10
    dataset = TensorDataset(labels.float().unsqueeze(1), labels)
    total = 0
    for rank in range(workers):
        sampler = DistributedSampler(dataset, num_replicas=workers, rank=rank, shuffle=shuffle, seed=0)
        loader = DataLoader(dataset, batch_size=2, sampler=sampler)
        meter = OnlineAccuracyMeter(Perfect(), with_task_labels=False)
        meter.start_epoch(loader)
        for batch in loader:
            meter.score(batch)
        assert meter.correct == meter.total
        total += meter.total
    assert total == samples
