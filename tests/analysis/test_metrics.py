import math

import pytest

from sylvan.analysis.metrics import (
    Results,
    average_incremental_accuracy,
    backward_transfer,
    final_average_accuracy,
    forgetting,
    forward_transfer,
)

# R[i, j]: accuracy on task j after training on task i.
R = [
    [0.9, 0.1, 0.2],
    [0.6, 0.8, 0.1],
    [0.5, 0.7, 0.9],
]


def test_final_average_accuracy():
    assert final_average_accuracy(R) == pytest.approx((0.5 + 0.7 + 0.9) / 3)


def test_average_incremental_accuracy():
    expected = (0.9 + (0.6 + 0.8) / 2 + (0.5 + 0.7 + 0.9) / 3) / 3
    assert average_incremental_accuracy(R) == pytest.approx(expected)


def test_forgetting_uses_best_earlier_accuracy():
    # task 0: best 0.9, final 0.5 -> 0.4 ; task 1: best 0.8, final 0.7 -> 0.1
    assert forgetting(R) == pytest.approx((0.4 + 0.1) / 2)
    # the best is not always the diagonal: task 0 peaks after stage 1
    assert forgetting([[0.5, 0.0], [0.9, 0.6], [0.3, 0.6]]) == pytest.approx((0.6 + 0.0) / 2)


def test_backward_transfer():
    assert backward_transfer(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)


def test_forward_transfer_against_initial_accuracies():
    initial = [0.1, 0.2, 0.3]
    assert forward_transfer(R, initial) == pytest.approx(((0.1 - 0.2) + (0.1 - 0.3)) / 2)


def test_single_row_matrices_have_no_transfer_metrics():
    row = [[0.2, 0.4]]
    assert final_average_accuracy(row) == pytest.approx(0.3)
    assert forgetting(row) is None and backward_transfer(row) is None
    assert forward_transfer(row, [0.0, 0.0]) is None


def test_invalid_matrix_is_rejected():
    with pytest.raises(ValueError):
        final_average_accuracy([])


def test_results_serialization_separates_timings():
    results = Results("class_incremental", "naive", R, initial_accuracies=[0.1, 0.1, 0.1],
                      task_aware_matrix=R, samples_seen=[10, 10, 10], task_wall_time=[1.0, 2.0, 3.0],
                      total_wall_time=6.0)
    metrics = results.metrics_dict()
    assert "task_wall_time" not in metrics and "total_wall_time" not in metrics
    assert metrics["final_average_accuracy"] == pytest.approx(0.7)
    assert results.runtime_dict()["task_wall_time"] == [1.0, 2.0, 3.0]
    table = results.table()
    assert "70.00" in table and "final average accuracy" in table
    assert not any(isinstance(v, float) and math.isnan(v) for v in metrics.values())


def test_joint_training_leaves_out_the_metrics_across_stages():
    continual = Results("domain_incremental", "from_scratch", R, initial_accuracies=[0.1, 0.1, 0.1])
    joint = Results("domain_incremental", "from_scratch", R, initial_accuracies=[0.1, 0.1, 0.1], joint_training=True)
    assert joint.final_average_accuracy == continual.final_average_accuracy
    metrics = joint.metrics_dict()
    for key in ("average_incremental_accuracy", "forgetting", "backward_transfer", "forward_transfer"):
        assert getattr(continual, key) is not None and getattr(joint, key) is None and metrics[key] is None
    assert metrics["joint_training"] is True and continual.metrics_dict()["joint_training"] is False
    assert "joint training" in joint.table() and "forgetting:" not in joint.table()
    assert "joint training" not in continual.table() and "forgetting:" in continual.table()


def test_class_accuracies_come_from_the_confusion_matrix():
    confusion = [[3, 1, 0], [2, 2, 0], [0, 0, 0]]  # class 2 has no test sample
    results = Results("class_incremental", "naive", R, confusion_matrix=confusion)
    assert results.class_accuracies == [0.75, 0.5, None]
    metrics = results.metrics_dict()
    assert metrics["confusion_matrix"] == confusion and metrics["class_accuracies"] == [0.75, 0.5, None]
    assert Results("class_incremental", "naive", R).metrics_dict()["class_accuracies"] is None
