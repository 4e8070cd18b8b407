"""Evaluation split across data-parallel workers: each scores its shard of every test set, and
the counts are summed over the workers, so every test sample is scored once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch

from sylvan.run.task_data import TaskData

if TYPE_CHECKING:
    from sylvan.run.evaluation import Evaluation
    from sylvan.workers import Workers


def sharded_evaluation(evaluate: Callable[[list[TaskData]], Evaluation], tasks: list[TaskData],
                       workers: Workers, num_classes: int) -> Evaluation:
    """`evaluate(tasks)` over this worker's shard of each test set, summed over the workers.
    Before the workers exist (the evaluation before training), one process scores it all."""
    if not workers.connected:
        return evaluate(tasks)
    rank, world = workers.rank, workers.world_size
    test_shards: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # tasks that share a test set share its shard
    for t in tasks:
        test_shards.setdefault(id(t.x_test), (t.x_test[rank::world], t.y_test[rank::world]))
    shards = [TaskData(t.task_id, t.x_train, t.y_train, *test_shards[id(t.x_test)], t.classes) for t in tasks]
    evaluation = evaluate(shards)
    accuracies, aware, confusion = evaluation.accuracies, evaluation.aware, evaluation.confusion
    sizes = torch.tensor([len(s.y_test) for s in shards], dtype=torch.float64)
    counts = torch.stack([torch.tensor(accuracies, dtype=torch.float64) * sizes,
                          torch.tensor(aware or accuracies, dtype=torch.float64) * sizes, sizes])
    # one collective for both: the confusion counts are integers, exact in float64
    summed = workers.sum_to_cpu(torch.cat([counts.flatten(), confusion.flatten().double()]))
    counts, confusion = summed[: counts.numel()].view(counts.shape), summed[counts.numel() :]
    totals = counts[2].clamp(min=1)
    accuracies = (counts[0] / totals).round(decimals=12).tolist()
    return evaluation._replace(
        accuracies=accuracies, aware=None if aware is None else (counts[1] / totals).round(decimals=12).tolist(),
        confusion=confusion.round().long().view(-1, num_classes),
    )


def summed_online_counts(meter: Any, workers: Workers) -> None:
    """Make the predict-then-train meter's counts those of every worker's shard of the stream."""
    if not workers.connected:
        return
    summed = workers.sum_to_cpu(torch.tensor([meter.correct, meter.total], dtype=torch.float64))
    meter.correct, meter.total = int(summed[0].round()), int(summed[1].round())
