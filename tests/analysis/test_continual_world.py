"""Continual World's metrics (`sylvan.analysis.continual_world`) on hand-made success curves,
against values computed by hand from the definitions of the paper's code: the end of a task or of
the stream averages the last tenth of a task's evaluation points (the paper's last 5 of 50),
forward transfer normalizes by the reference's shortfall."""

from __future__ import annotations

import pytest

from sylvan.analysis.continual_world import (
    _window,
    continual_world_metrics,
    forward_transfer_per_task,
    success_at_end,
    success_at_task_end,
    training_auc,
)
from sylvan.analysis.metrics import Results


def two_tasks() -> tuple[list[int], list[list[float]], list[list[int]]]:
    """Two tasks of 200 steps, evaluated every 10: 20 points per task, so each end averages 2.
    Task 0 learns linearly to 1 (p / 20 at its p-th point), then drops to 0.5 while task 1
    trains; task 1 is at 0 during task 0 and succeeds at every point of its own training."""
    steps = list(range(10, 401, 10))
    success = [[p / 20, 0.0] for p in range(1, 21)] + [[0.5, 1.0] for _ in range(20)]
    return steps, success, [[0, 200], [200, 400]]


def test_the_papers_window_is_the_last_tenth_of_a_tasks_points():
    assert _window(50) == 5  # Continual World: 1M steps per task, an evaluation every 20k, the last 5
    assert _window(20) == 2 and _window(4) == 1 and _window(1) == 1


def test_each_metric_on_a_hand_made_curve():
    steps, success, spans = two_tasks()
    assert success_at_task_end(steps, success, spans) == pytest.approx([(0.95 + 1.0) / 2, 1.0])
    assert success_at_end(steps, success, spans) == pytest.approx([0.5, 1.0])
    assert training_auc(steps, success, spans) == pytest.approx([sum(range(1, 21)) / 20 / 20, 1.0])  # 0.525, 1

    found = continual_world_metrics(steps, success, spans, reference_auc=[0.525, 0.5])
    assert found["cw_performance"] == pytest.approx(0.75)
    assert found["cw_forgetting_per_task"] == pytest.approx([0.975 - 0.5, 0.0])
    assert found["cw_forgetting"] == pytest.approx(0.2375)
    # task 0 learns as fast as alone (0); task 1 closes all of the reference's shortfall ((1 - 0.5) / (1 - 0.5))
    assert found["cw_forward_transfer_per_task"] == pytest.approx([0.0, 1.0])
    assert found["cw_forward_transfer"] == pytest.approx(0.5)


def test_transfer_is_undefined_where_the_reference_succeeds_at_every_point_or_is_missing():
    assert forward_transfer_per_task([0.8, 0.3, None], [1.0, 0.6, 0.2]) == pytest.approx([None, -0.75, None])
    steps, success, spans = two_tasks()
    found = continual_world_metrics(steps, success, spans, reference_auc=[0.525, 1.0])
    assert found["cw_forward_transfer"] == pytest.approx(0.0)  # the mean over the tasks that have one
    assert continual_world_metrics(steps, success, spans)["cw_forward_transfer"] is None


def test_multi_task_training_has_a_performance_and_no_forgetting_or_transfer():
    steps = list(range(10, 210, 10))  # 20 points, all tasks trained at once: the end is the last 2
    success = [[0.0, 0.0]] * 18 + [[0.6, 0.8], [1.0, 0.4]]
    found = continual_world_metrics(steps, success, None)
    assert found == {"cw_performance": pytest.approx((0.8 + 0.6) / 2), "cw_forgetting": None,
                     "cw_forward_transfer": None}


def test_a_task_without_a_point_in_its_span_has_no_forgetting():
    # one evaluation at the end of a two-task stream trained as one (continual_rl without --eval_every)
    found = continual_world_metrics([400], [[0.2, 0.9]], [[0, 200], [200, 400]])
    assert found["cw_forgetting_per_task"] == [None, 0.0] and found["cw_forgetting"] == 0.0


def test_results_report_them_where_the_environments_report_success():
    steps, success, spans = two_tasks()
    results = Results("incremental_rl", "sac", accuracy_matrix=[[1.0, 0.0], [0.5, 1.0]], measure="return",
                      evaluation_curve={"steps": steps, "return": [[0.0, 0.0]] * 40, "success": success},
                      task_spans=spans, reference_auc=[0.525, 0.5])
    metrics = results.metrics_dict()
    assert metrics["cw_performance"] == pytest.approx(0.75) and metrics["cw_forward_transfer"] == pytest.approx(0.5)
    assert metrics["evaluation_curve"]["steps"] == steps
    assert "CW forgetting:    0.24" in results.table()
    returns_only = Results("incremental_rl", "sac", accuracy_matrix=[[1.0]], measure="return",
                           evaluation_curve={"steps": [10], "return": [[1.0]], "success": None}, task_spans=[[0, 10]])
    assert "cw_performance" not in returns_only.metrics_dict()


def test_the_end_of_the_stream_takes_as_many_points_as_the_end_of_a_task():
    steps, success, spans = two_tasks()
    success[-2:] = [[0.3, 1.0], [0.1, 1.0]]  # 40 points in all: a tenth of the curve would be 4, of a task 2
    assert success_at_end(steps, success, spans) == pytest.approx([0.2, 1.0])
