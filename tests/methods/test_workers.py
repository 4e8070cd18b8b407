"""What methods share with the other data-parallel workers: averaged and summed tensors, averaged
running statistics, tensors concatenated over the workers, weights copied from the first worker,
across 2 real gloo workers, and left alone in one process."""

from __future__ import annotations

import torch
from torch import nn

from sylvan.methods.parts.workers import (
    average_statistics_over_workers,
    concatenated_over_workers,
    copy_from_first_worker,
    mean_over_workers,
    sum_over_workers,
    worker_count,
)
from tests.gloo_workers import results_on_two_workers


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())


def averaging_worker(rank: int) -> dict:
    model = network()
    norm = model[1]
    with torch.no_grad():
        norm.running_mean.fill_(rank + 1.0)
        norm.running_var.fill_(2.0 * (rank + 1))
        norm.num_batches_tracked.fill_(10 * (rank + 1))
        model[0].weight.add_(rank)  # a parameter: not a statistic, left alone
    average_statistics_over_workers(model)
    averaged = mean_over_workers(torch.tensor([float(rank), 4.0 * rank]))
    sums, counts = torch.full((2, 3), rank + 1.0), torch.tensor([rank, 2.0])
    sum_over_workers(sums, counts)
    result = {
        "count": worker_count(), "mean": norm.running_mean.tolist(), "var": norm.running_var.tolist(),
        "tracked": int(norm.num_batches_tracked), "weight_shift": float((model[0].weight - network()[0].weight).mean()),
        "averaged": averaged.tolist(), "sums": sums.tolist(), "counts": counts.tolist(),
    }
    return result


def test_statistics_and_tensors_are_averaged_over_two_workers(tmp_path):
    for rank, result in enumerate(results_on_two_workers(averaging_worker, tmp_path)):
        assert result["count"] == 2
        assert result["mean"] == [1.5] * 4 and result["var"] == [3.0] * 4
        assert result["tracked"] == 10 * (rank + 1), "integer buffers are not statistics to average"
        assert result["weight_shift"] == rank, "parameters are left alone"
        assert result["averaged"] == [0.5, 2.0]
        assert result["sums"] == [[3.0] * 3] * 2 and result["counts"] == [1.0, 4.0], "summed in place, both"


def test_one_process_leaves_everything_as_it_is():
    model = network()
    with torch.no_grad():
        model[1].running_mean.fill_(3.0)
    average_statistics_over_workers(model)
    assert worker_count() == 1
    assert model[1].running_mean.tolist() == [3.0] * 4
    tensor = torch.tensor([1.0, 2.0])
    assert mean_over_workers(tensor) is tensor and tensor.tolist() == [1.0, 2.0]
    sum_over_workers(tensor)
    assert tensor.tolist() == [1.0, 2.0]
    stored = torch.arange(6, dtype=torch.uint8).view(3, 2)
    assert concatenated_over_workers(stored) is stored
    copy_from_first_worker(model)
    assert model[1].running_mean.tolist() == [3.0] * 4


def sharing_worker(rank: int) -> dict:
    # worker 0 holds two rows, worker 1 three: uint8 pixels, as a buffer keeps them
    rows = torch.full((2 + rank, 1, 2), 10 * (rank + 1), dtype=torch.uint8)
    rows[:, 0, 1] = torch.arange(2 + rank, dtype=torch.uint8)
    joined = concatenated_over_workers(rows)
    model = network()
    with torch.no_grad():
        model[0].weight.add_(rank)
        model[1].num_batches_tracked.fill_(rank + 5)
    copy_from_first_worker(model)
    result = {
        "joined": joined.tolist(), "dtype": str(joined.dtype),
        "weight_shift": float((model[0].weight - network()[0].weight).abs().max()),
        "tracked": int(model[1].num_batches_tracked),
    }
    return result


def test_rows_are_joined_in_rank_order_and_weights_copied_from_the_first_worker(tmp_path):
    for rank, result in enumerate(results_on_two_workers(sharing_worker, tmp_path)):
        assert result["joined"] == [[[10, 0]], [[10, 1]], [[20, 0]], [[20, 1]], [[20, 2]]]
        assert result["dtype"] == "torch.uint8"
        assert result["weight_shift"] == 0.0, "worker 1 takes worker 0's weights"
        assert result["tracked"] == rank + 5, "integer buffers are left as they are"
