"""What methods share with the other data-parallel workers: averaged and summed tensors, averaged
running statistics, tensors concatenated over the workers, weights copied from the first worker,
across 2 real gloo workers, and left alone in one process."""

from __future__ import annotations

import torch
from torch import nn

from sylvan.workers import Workers, group_size
from tests.gloo_workers import results_on_two_workers

WORKERS = Workers()  # what a run's `RunContext.workers` is, as each process sees it


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
    WORKERS.average_statistics(model)
    averaged = WORKERS.mean(torch.tensor([float(rank), 4.0 * rank]))
    sums, counts = torch.full((2, 3), rank + 1.0), torch.tensor([rank, 2.0])
    WORKERS.sum(sums, counts)
    result = {
        "count": group_size(), "mean": norm.running_mean.tolist(), "var": norm.running_var.tolist(),
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
    WORKERS.average_statistics(model)
    assert group_size() == 1
    assert model[1].running_mean.tolist() == [3.0] * 4
    tensor = torch.tensor([1.0, 2.0])
    assert WORKERS.mean(tensor) is tensor and tensor.tolist() == [1.0, 2.0]
    WORKERS.sum(tensor)
    assert tensor.tolist() == [1.0, 2.0]
    stored = torch.arange(6, dtype=torch.uint8).view(3, 2)
    assert WORKERS.concatenated(stored) is stored
    WORKERS.copy_from_first(model)
    assert model[1].running_mean.tolist() == [3.0] * 4


def sharing_worker(rank: int) -> dict:
    # worker 0 holds two rows, worker 1 three: uint8 pixels, as a buffer keeps them
    rows = torch.full((2 + rank, 1, 2), 10 * (rank + 1), dtype=torch.uint8)
    rows[:, 0, 1] = torch.arange(2 + rank, dtype=torch.uint8)
    joined = WORKERS.concatenated(rows)
    model = network()
    with torch.no_grad():
        model[0].weight.add_(rank)
        model[1].num_batches_tracked.fill_(rank + 5)
    WORKERS.copy_from_first(model)
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


def topology_worker(rank: int) -> dict:
    workers = Workers(world_size=2, seed=3)
    experts = [nn.Linear(2, 1) for _ in range(3)]
    with torch.no_grad():
        for expert in experts:
            expert.weight.fill_(rank)
    owned = [job for job in range(3) if workers.owns(job)]
    for job in owned:
        with torch.no_grad():
            experts[job].weight.fill_(10.0 + job)
    workers.copied_from_owners(experts)
    workers.wait_for_each_other()
    return {"rank": workers.rank, "world": workers.world_size, "connected": workers.connected, "owned": owned,
            "weights": [float(e.weight[0, 0]) for e in experts], "folder": workers.from_first(f"from {rank}"),
            "seed": workers.seed(7), "draw_seed": workers.draw_seed(11),
            "summed": workers.sum_to_cpu(torch.tensor([rank + 1.0], dtype=torch.float64)).tolist()}


def test_the_workers_share_jobs_out_and_agree_on_what_their_owners_trained(tmp_path):
    results = results_on_two_workers(topology_worker, tmp_path)
    assert [r["rank"] for r in results] == [0, 1] and all(r["world"] == 2 and r["connected"] for r in results)
    assert [r["owned"] for r in results] == [[0, 2], [1]], "jobs dealt round-robin, the first to worker 0"
    assert all(r["weights"] == [10.0, 11.0, 12.0] for r in results), "each network as its owner trained it"
    assert all(r["folder"] == "from 0" for r in results)
    assert all(r["summed"] == [3.0] for r in results)
    # each worker's own draws: the run's seed on worker 0, another on every other worker
    assert results[0]["seed"] == 3 + 7 and results[1]["seed"] == (3 + 7) * 7919 + 1_000_003
    assert [r["draw_seed"] for r in results] == [3 * 7919 + 11, 3 * 7919 + 11 + 1]


def test_one_process_owns_every_job_and_keeps_the_runs_seed():
    workers = Workers(seed=5)
    assert workers.rank == 0 and workers.world_size == 1 and not workers.connected
    assert all(workers.owns(job) for job in range(4))
    assert workers.seed(2) == 7 and workers.draw_seed(3) == 5 * 7919 + 3 and workers.draw_seed(3, seed=1) == 7919 + 3
    assert workers.from_first("mine") == "mine"
    assert workers.sum_to_cpu(torch.tensor([2.0])).tolist() == [2.0]
    workers.wait_for_each_other()
