"""The stream of datasets (`dataset_stream`): named and generated streams, one label space per
task, past tasks' data open to the method, no future task's data ever given to it, and each
task's forward transfer against the method trained on that task alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sylvan.errors import ConfigurationError, UnknownNameError
from sylvan.methods import METHODS
from sylvan.settings import DatasetStreamSetting, TaskIncrementalSetting
from sylvan.settings.data.dataset_streams import TRANSFORMATIONS, generated_plan, transformed


def stream(**options) -> DatasetStreamSetting:
    options.setdefault("epochs", 1)
    return DatasetStreamSetting(progress_bar=False, **options)


def test_a_generated_stream_of_20_tasks_runs_offline_with_a_label_space_per_task():
    setting = stream(stream_length=20, forward_transfer=False)
    assert setting.nb_tasks == 20 and setting.input_shape == (1, 8, 8)
    tasks = setting.prepare_tasks()
    first = 0
    for task, plan in zip(tasks, setting.plan()):
        assert task.classes == list(range(first, first + len(plan.classes)))  # labels after the previous tasks'
        assert set(task.y_train.tolist()) <= set(task.classes) and set(task.y_test.tolist()) <= set(task.classes)
        assert task.x_train.dtype == torch.uint8 and task.x_train.shape[1:] == (1, 8, 8)
        first += len(plan.classes)
    assert setting.num_classes == first == sum(setting.class_increments())
    results = setting.apply(METHODS["naive"]())
    matrix = results.accuracy_matrix
    assert results.complete and len(matrix) == 20
    for stage, row in enumerate(matrix):  # every task seen is evaluated, no task to come
        assert all(a is not None for a in row[: stage + 1]) and row[stage + 1:] == [None] * (19 - stage)
    assert results.final_average_accuracy == pytest.approx(np.mean(matrix[-1]))
    assert results.forgetting is not None and results.average_incremental_accuracy is not None


def test_the_generated_stream_draws_from_its_sources_every_kind_of_task():
    plans = generated_plan(100, ["digits", "synthetic"], seed=3)
    assert plans == generated_plan(100, ["digits", "synthetic"], seed=3)  # the same stream for the same seed
    assert plans != generated_plan(100, ["digits", "synthetic"], seed=4)
    assert {plan.dataset for plan in plans} == {"digits", "synthetic"}
    assert {plan.transformation for plan in plans} == set(TRANSFORMATIONS)
    assert {len(plan.classes) for plan in plans} == {2, 3, 4, 5}
    assert any(plan.samples_per_class is not None for plan in plans)
    assert any(list(plan.classes) != sorted(plan.classes) for plan in plans)  # shuffled labels


def test_the_stream_does_not_change_with_the_training_seed():
    assert stream(seed=1).plan() == stream(seed=2).plan() != stream(stream_seed=1).plan()


def test_transformations_are_those_they_name():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.uint8).reshape(2, 1, 3, 3)
    assert torch.equal(transformed(x, "none", 0), x)
    assert torch.equal(transformed(x, "rotate", 2), x.flip(2).flip(3))
    assert torch.equal(transformed(x, "invert", 0), 255 - x)
    permuted = transformed(x, "permute", 7)
    assert not torch.equal(permuted, x) and torch.equal(permuted.flatten(1).sort().values, x.flatten(1).sort().values)
    assert torch.equal(transformed(x, "permute", 7), permuted)  # the same permutation for every sample
    recoloured = transformed(x, "recolour", 7)
    assert recoloured.dtype == torch.uint8 and not torch.equal(recoloured, x)
    order = x.flatten().argsort()
    assert bool((recoloured.flatten()[order].diff() >= 0).all())  # an increasing map of the grey levels


def test_a_named_stream_brings_every_dataset_to_one_shape(mnist_root):
    setting = stream(stream="digits,mnist,synthetic", data_dir=str(mnist_root), train_samples=200,
                     forward_transfer=False)
    assert setting.nb_tasks == 3 and setting.input_shape == (1, 28, 28) and setting.num_classes == 30
    tasks = setting.prepare_tasks()
    assert [task.classes for task in tasks] == [list(range(0, 10)), list(range(10, 20)), list(range(20, 30))]
    assert all(task.x_train.shape[1:] == (1, 28, 28) for task in tasks)
    assert [len(task.y_train) for task in tasks] == [200, 200, 200]
    assert len(tasks[1].y_test) == 10_000  # MNIST's test set, whole


def test_colour_and_grey_datasets_meet_at_the_colour_shape():
    setting = stream(stream="digits,random_cifar10", forward_transfer=False, train_samples=100)
    assert setting.input_shape == (3, 32, 32) and setting.dataset_spec.default_backbone == "resnet18"
    digits_task = setting.prepare_tasks()[0]
    assert digits_task.x_train.shape[1:] == (3, 32, 32)
    assert torch.equal(digits_task.x_train[:, 0], digits_task.x_train[:, 2])  # grey repeated


@pytest.mark.parametrize("method_name", ["rehearsal", "icarl", "gdumb", "lwf", "pnn"])
def test_no_method_ever_receives_data_of_a_future_task(method_name):
    """A method that records every input handed to it (its training steps, the loaders of its
    fits, the past tasks it may revisit, and what it is asked to predict), then each input is
    found among the tasks' data: none belongs only to a task after the one being trained."""
    setting = stream(stream_length=6, forward_transfer=False)
    tasks = setting.prepare_tasks()
    owners: dict[bytes, set[int]] = {}
    for task in tasks:
        for x in (task.x_train, task.x_test):
            for row in x.flatten(1).numpy():
                owners.setdefault(row.tobytes(), set()).add(task.task_id)
    method = METHODS[method_name](**({"buffer_size": 40} if hasattr(METHODS[method_name], "buffer_size") else {}))
    received: list[tuple[int, torch.Tensor]] = []
    current = {"task": -1}
    start, step, fit, predict = method.on_task_start, method.training_step, method.fit, method.predict

    def on_task_start(task_id):
        current["task"] = task_id
        return start(task_id)

    def fit_recording(train_data, val_data=None):
        received.append((current["task"], train_data.dataset.tensors[0]))
        past = method.run.past_tasks
        assert past.task_ids == list(range(current["task"]))
        if len(past):
            received.append((current["task"], past.dataset().datasets[0].tensors[0] if len(past) > 1
                             else past.dataset().tensors[0]))
            batch = next(iter(past.loader(batch_size=16)))
            received.append((current["task"], batch[0]))
        return fit(train_data, val_data)

    def step_recording(batch):
        received.append((current["task"], batch.x))
        return step(batch)

    def predict_recording(x, task_labels=None):
        received.append((current["task"], x))
        return predict(x, task_labels)

    method.on_task_start, method.training_step = on_task_start, step_recording
    method.fit, method.predict = fit_recording, predict_recording
    results = setting.apply(method)
    assert results.complete and received
    assert {stage for stage, _ in received} == set(range(6))
    for stage, x in received:
        pixels = x if x.dtype == torch.uint8 else (x * 255).round().to(torch.uint8)
        for row in pixels.flatten(1).cpu().numpy():
            assert min(owners[row.tobytes()]) <= stage


def test_forward_transfer_is_against_the_method_trained_on_each_task_alone():
    setting = stream(stream_length=4)
    results = setting.apply(METHODS["naive"]())
    alone = [stream(stream_length=4, only_task=task).apply(METHODS["naive"]()) for task in range(4)]
    assert all(len(run.accuracy_matrix) == 1 for run in alone)
    assert results.independent_accuracies == [run.final_average_accuracy for run in alone]
    matrix = results.accuracy_matrix
    per_task = [matrix[j][j] - alone[j].final_average_accuracy for j in range(4)]
    assert results.forward_transfer_per_task == pytest.approx(per_task)
    assert results.forward_transfer == pytest.approx(np.mean(per_task[1:]))
    saved = results.metrics_dict()
    assert saved["forward_transfer_per_task"] == results.forward_transfer_per_task
    assert saved["independent_accuracies"] == results.independent_accuracies


def test_a_task_alone_keeps_the_streams_shape_and_its_own_labels():
    whole, alone = stream(stream="digits,random_cifar10", train_samples=100), stream(
        stream="digits,random_cifar10", train_samples=100, only_task=0)
    assert alone.input_shape == whole.input_shape == (3, 32, 32)
    assert alone.nb_tasks == 1 and alone.num_classes == 10 and alone.prepare_tasks()[0].classes == list(range(10))


@pytest.mark.parametrize("method_name", ["naive", "ewc", "si", "lwf", "der", "gdumb", "multi_head", "pnn",
                                         "packnet", "hat"])
def test_methods_of_task_incremental_run_on_the_stream_unchanged(method_name):
    method = METHODS[method_name]()
    assert method.is_applicable(stream())
    results = stream(stream_length=3, forward_transfer=False).apply(method)
    assert results.complete and 0 <= results.final_average_accuracy <= 1


@pytest.mark.slow
def test_every_method_of_task_incremental_runs_on_the_stream():
    applicable = [name for name, cls in METHODS.items() if issubclass(DatasetStreamSetting, cls.target_setting)]
    assert len(applicable) > 30
    for name in applicable:
        results = stream(stream_length=3, forward_transfer=False, train_samples=200).apply(METHODS[name]())
        assert results.complete, name


def test_it_is_a_child_of_task_incremental_with_past_data_available():
    assert DatasetStreamSetting.parent() is TaskIncrementalSetting
    assert DatasetStreamSetting.assumptions()["past_data_available"]
    assert not TaskIncrementalSetting.assumptions()["past_data_available"]


@pytest.mark.parametrize(("options", "message"), [
    ({"stream": "digits", "stream_length": 3}, "not both"),
    ({"stream_length": 0}, "--stream_length must be from 1 to 1000"),
    ({"stream": " , "}, "names no dataset"),
    ({"dataset": "mnist"}, "--dataset mnist has no effect"),
    ({"nb_tasks": 7}, "the stream has 20 tasks"),
    ({"only_task": 20}, "from 0 to 19"),
    ({"blurry": 0.1}, "--blurry does not apply"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        stream(**options)


def test_an_unknown_dataset_is_refused_with_the_known_ones():
    with pytest.raises(UnknownNameError, match="digits"):
        stream(stream="digits,nope")


def test_a_resumed_stream_equals_one_never_interrupted(tmp_path):
    """The checkpoint holds the matrix with its entries still to come; the references of the
    forward transfer are trained after the stream, resumed or not."""
    from sylvan.run.checkpoints import latest_checkpoint
    from sylvan.run.tracking import Tracker
    from tests.run.test_resume import Interrupted, InterruptingTracker

    def run(tracker, resume=None):
        return stream(stream_length=3, seed=2).apply(METHODS["rehearsal"](buffer_size=30), tracker, resume=resume)

    full = Tracker(tmp_path, "full", {}, verbose=False)
    full.write_results(run(full))
    cut = InterruptingTracker(tmp_path, "cut", {}, verbose=False)
    with pytest.raises(Interrupted):
        run(cut)
    resumed = Tracker(tmp_path, "ignored", {}, verbose=False, resume_dir=cut.run_dir)
    resumed.write_results(run(resumed, latest_checkpoint(cut.run_dir)))
    assert (cut.run_dir / "results.json").read_text() == (full.run_dir / "results.json").read_text()
    assert '"independent_accuracies"' in (full.run_dir / "results.json").read_text()
