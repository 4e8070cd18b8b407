"""`from_scratch`'s joint form (`last_task_only`): nothing is trained until the last task, which
trains once on every task's data."""

from __future__ import annotations

import math

from sylvan.methods import FromScratch, Naive
from sylvan.settings import ClassIncrementalSetting, DomainIncrementalSetting, MultiTaskSetting
from tests.conftest import counted_steps

OPTIONS = dict(dataset="digits", nb_tasks=5, epochs=2, batch_size=16, progress_bar=False)


def test_last_task_only_trains_once_after_the_last_task_on_every_task():
    setting = ClassIncrementalSetting(**OPTIONS)
    method = FromScratch(last_task_only=True)
    sizes = counted_steps(method)
    results = setting.apply(method)

    union = sum(len(task.y_train) for task in setting.prepare_tasks())
    assert len(sizes) == OPTIONS["epochs"] * math.ceil(union / OPTIONS["batch_size"])
    assert sum(sizes) == OPTIONS["epochs"] * union
    for row in results.accuracy_matrix[:-1]:  # untrained until the last task
        assert row == results.initial_accuracies
    assert results.final_average_accuracy > 0.9
    # the rows before the last measure no learner: no forgetting, transfer or incremental accuracy
    assert results.joint_training
    assert results.forgetting is None and results.backward_transfer is None and results.forward_transfer is None
    assert results.average_incremental_accuracy is None


def test_retraining_after_every_task_trains_on_the_union_each_time():
    setting = ClassIncrementalSetting(**OPTIONS)
    method = FromScratch()
    sizes = counted_steps(method)
    results = setting.apply(method)

    seen = [sum(len(task.y_train) for task in setting.prepare_tasks()[: t + 1]) for t in range(OPTIONS["nb_tasks"])]
    assert sum(sizes) == OPTIONS["epochs"] * sum(seen)
    assert results.accuracy_matrix[0] != results.initial_accuracies
    assert not results.joint_training and results.forgetting is not None


def test_joint_training_is_the_upper_bound_of_a_domain_incremental_stream():
    options = dict(OPTIONS, nb_tasks=4, epochs=3)
    joint = DomainIncrementalSetting(**options).apply(FromScratch(last_task_only=True))
    naive = DomainIncrementalSetting(**options).apply(Naive())
    assert joint.final_average_accuracy > naive.final_average_accuracy + 0.15
    assert joint.final_average_accuracy > 0.8


def test_a_single_stage_setting_trains_at_once():
    results = MultiTaskSetting(**OPTIONS).apply(FromScratch(last_task_only=True))
    assert len(results.accuracy_matrix) == 1 and results.final_average_accuracy > 0.9
