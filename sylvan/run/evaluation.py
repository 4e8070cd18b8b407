"""Evaluation of a method on every task of a supervised stream: accuracies, task-aware
accuracies and the confusion matrix, from the method's `predict`."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from sylvan.minibatches import float_inputs
from sylvan.run.flop_count import FlopCount
from sylvan.run.task_data import TaskData


class Evaluation(NamedTuple):
    """What one evaluation of a method on every task's test set measured."""

    accuracies: list[float]  # on each task's test set
    aware: list[float] | None  # the same with scores restricted to the task's classes (None: tasks share them)
    # (classes, classes) int64 counts[true class, predicted class] over all of them; None: no classes
    confusion: torch.Tensor | None
    # the FLOPs of `predict` per sample, counted on the first batch of each task's test set
    inference_flops_per_sample: float | None = None
    # reinforcement learning where the environments report success: the share of each task's
    # evaluation episodes that succeeded
    successes: list[float] | None = None


def evaluate_tasks(method: Any, tasks: list[TaskData], num_classes: int, batch_size: int,
                   task_labels_at_test: bool, shared_output_space: bool) -> Evaluation:
    """Accuracy of `method` on every task's test set (scored `batch_size` samples at a time,
    told the task where `task_labels_at_test`), the task-aware accuracy (scores restricted to
    the task's classes) unless tasks share their classes, and the confusion matrix of its
    predictions over all of them."""
    accuracies, aware = [], []
    classes = num_classes
    confusion = torch.zeros(classes * classes, dtype=torch.int64)
    scored: dict[tuple[int, tuple[int, ...]], tuple[float, float]] = {}
    inference_flops = counted_samples = 0
    for task in tasks:
        # tasks that share one test set (a dataset's fixed one) are scored on it once, unless the
        # method is told which task it is scored as
        shared = (id(task.x_test), tuple(task.classes))
        if not task_labels_at_test and shared in scored:
            accuracies.append(scored[shared][0])
            aware.append(scored[shared][1])
            continue
        correct = aware_correct = 0
        mask = torch.zeros(classes, dtype=torch.bool)
        mask[task.classes] = True
        for start in range(0, len(task.y_test), batch_size):
            x = float_inputs(task.x_test[start : start + batch_size])
            y = task.y_test[start : start + batch_size]
            task_labels = torch.full_like(y, task.task_id) if task_labels_at_test else None
            if start == 0:  # what inference costs, on the task's first batch (`sylvan.run.accounting`)
                count = FlopCount()
                try:
                    scores = method.predict(x, task_labels)
                finally:
                    inference_flops += count.stop()
                counted_samples += len(x)
            else:
                scores = method.predict(x, task_labels)
            if scores.shape != (len(y), classes):
                raise RuntimeError(
                    f"{type(method).__name__}.predict returned shape {tuple(scores.shape)}, "
                    f"expected (batch, num_classes) = {(len(y), classes)}"
                )
            scores = scores.detach().float().cpu()
            predicted = scores.argmax(1)
            correct += int((predicted == y).sum())
            confusion += torch.bincount(y * classes + predicted, minlength=classes * classes)
            masked = scores.masked_fill(~mask, float("-inf"))
            aware_correct += int((masked.argmax(1) == y).sum())
        accuracies.append(correct / len(task.y_test))
        aware.append(aware_correct / len(task.y_test))
        scored[shared] = (accuracies[-1], aware[-1])
    inference = inference_flops / counted_samples if counted_samples else None
    return Evaluation(accuracies, None if shared_output_space else aware, confusion.view(classes, classes), inference)


def evaluate_setting(setting: Any, method: Any, tasks: list[TaskData], parallel: Any = None) -> Evaluation:
    """`evaluate_tasks` as `setting` (an `OnlineSetting`) evaluates: its classes, evaluation batch
    size and task labels; split across the workers of a data-parallel run (`parallel`)."""

    def evaluate(on: list[TaskData]) -> Evaluation:
        return evaluate_tasks(method, on, setting.num_classes, setting.eval_batch_size, setting.task_labels_at_test,
                              setting.shared_output_space)

    if parallel is None:
        return evaluate(tasks)
    from sylvan.run.sharded_evaluation import sharded_evaluation

    return sharded_evaluation(evaluate, tasks, parallel.workers, setting.num_classes)
