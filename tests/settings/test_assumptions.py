"""Settings enforce their assumptions: a spy method records everything it is given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from sylvan.errors import ConfigurationError, InapplicableMethodError
from sylvan.methods import METHODS, Method
from sylvan.settings import (
    ClassIncrementalSetting,
    DomainIncrementalSetting,
    MultiTaskSetting,
    OnlineSetting,
    Setting,
    TaskIncrementalSetting,
)
from tests.conftest import tiny_options


@dataclass
class Spy(Method):
    """Records every call and what it carried; predicts the true label of nothing (zeros)."""

    name: ClassVar[str] = ""  # not registered: the generated method matrix must not run it
    target_setting: ClassVar[type] = Setting

    def configure(self, run):
        super().configure(run)
        self.stage_count = run.stage_count  # announced before the first stage
        self.calls: list[tuple] = []
        self.batch_widths: set[int] = set()
        self.predict_labels: list = []
        self.fit_sizes: list[int] = []

    def on_task_start(self, task_id):
        self.calls.append(("start", task_id))

    def on_task_end(self, task_id):
        self.calls.append(("end", task_id))

    def fit(self, train_data, val_data=None):
        self.calls.append(("fit",))
        seen = 0
        for batch in train_data:
            self.batch_widths.add(len(batch))
            seen += len(batch[0])
        self.fit_sizes.append(seen)

    def predict(self, x, task_labels=None):
        self.predict_labels.append(task_labels)
        return torch.zeros(len(x), self.run.num_classes)


def run_spy(setting_cls, **extra):
    setting = setting_cls(**{**tiny_options(setting_cls), "nb_tasks": 3, **extra})
    spy = Spy()
    results = setting.apply(spy)
    return setting, spy, results


def test_spy_is_not_registered():
    assert Spy not in METHODS.values()


@pytest.mark.parametrize(("setting_cls", "stages"), [(OnlineSetting, 1), (ClassIncrementalSetting, 3),
                                                     (DomainIncrementalSetting, 3), (MultiTaskSetting, 1)])
def test_a_method_is_told_before_the_first_stage_how_many_stages_the_run_has(setting_cls, stages):
    _, spy, results = run_spy(setting_cls)
    assert spy.stage_count == stages == len(results.accuracy_matrix) == spy.calls.count(("fit",))


def test_online_hides_boundaries_and_task_labels():
    setting, spy, results = run_spy(OnlineSetting)
    assert spy.calls == [("fit",)], "no task hook may fire without known boundaries"
    assert spy.batch_widths == {2}, "batches must be (x, y) only"
    assert all(labels is None for labels in spy.predict_labels)
    assert len(results.accuracy_matrix) == 1 and len(results.accuracy_matrix[0]) == 3
    assert spy.fit_sizes == [sum(results.samples_seen)]


@pytest.mark.parametrize("setting_cls", [ClassIncrementalSetting, DomainIncrementalSetting, TaskIncrementalSetting])
def test_the_confusion_matrix_counts_the_predictions_on_every_tasks_test_set(setting_cls):
    """The spy predicts class 0 for everything: column 0 holds every test sample of every task
    (a permuted domain's test set is a test set of its own), true class by true class."""
    setting, spy, results = run_spy(setting_cls)
    per_class = torch.bincount(torch.cat([t.y_test for t in setting.prepare_tasks()]), minlength=setting.num_classes)
    confusion = torch.tensor(results.confusion_matrix)
    assert confusion.shape == (setting.num_classes, setting.num_classes)
    assert torch.equal(confusion[:, 0], per_class) and confusion[:, 1:].sum() == 0
    assert results.class_accuracies == [1.0] + [0.0] * (setting.num_classes - 1)


def test_online_stream_is_one_pass_in_task_order():
    setting = OnlineSetting(**{**tiny_options(OnlineSetting), "nb_tasks": 5})
    tasks = setting.prepare_tasks()
    labels = torch.cat([batch[1] for batch in setting.stream_loader(tasks)])
    assert len(labels) == sum(len(t.y_train) for t in tasks)
    task_of_label = {c: t.task_id for t in tasks for c in t.classes}
    order = [task_of_label[int(label)] for label in labels]
    assert order == sorted(order), "the stream must visit tasks one after the other"


@pytest.mark.parametrize("setting_cls", [ClassIncrementalSetting, DomainIncrementalSetting])
def test_boundaries_known_but_no_task_labels_at_test(setting_cls):
    setting, spy, results = run_spy(setting_cls)
    expected = []
    for task in range(3):
        expected += [("start", task), ("fit",), ("end", task)]
    assert spy.calls == expected
    assert spy.batch_widths == {3}, "task labels come with training batches"
    assert all(labels is None for labels in spy.predict_labels)
    assert len(results.accuracy_matrix) == 3


def test_task_incremental_gives_task_labels_at_test():
    setting, spy, results = run_spy(TaskIncrementalSetting)
    given = [labels for labels in spy.predict_labels if labels is not None]
    assert len(given) == len(spy.predict_labels) > 0
    assert {int(v) for labels in given for v in labels.unique()} == {0, 1, 2}


def test_multi_task_trains_once_on_everything():
    setting, spy, results = run_spy(MultiTaskSetting)
    assert spy.calls == [("start", None), ("fit",), ("end", None)]
    tasks = setting.prepare_tasks()
    assert spy.fit_sizes == [sum(len(t.y_train) for t in tasks)]
    assert len(results.accuracy_matrix) == 1


def test_class_incremental_tasks_have_disjoint_classes():
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "nb_tasks": 5})
    tasks = setting.prepare_tasks()
    classes = [set(t.classes) for t in tasks]
    assert all(len(c) == 2 for c in classes)
    assert set().union(*classes) == set(range(10))
    for task in tasks:
        assert set(task.y_train.tolist()) == set(task.classes)
        assert set(task.y_test.tolist()) == set(task.classes)


def test_domain_incremental_shares_classes_and_shifts_inputs():
    for shift in ("permutation", "rotation"):
        setting = DomainIncrementalSetting(**{**tiny_options(DomainIncrementalSetting), "domain_shift": shift})
        first, second = setting.prepare_tasks()
        assert set(first.classes) == set(second.classes) == set(range(10))
        assert torch.equal(first.y_train, second.y_train)
        assert not torch.allclose(first.x_train, second.x_train)
        if shift == "permutation":  # a permutation keeps every pixel value
            assert torch.equal(first.x_train.flatten(1).sort(1).values, second.x_train.flatten(1).sort(1).values)


@pytest.mark.parametrize(("shift", "nb_tasks", "train_samples"), [
    ("permutation", 40, 60),  # digits' test set has about 36 samples a class: fewer than the tasks
    ("rotation", 10, 60),  # 6 training samples a class
])
def test_transformed_domains_may_outnumber_the_samples_of_a_class(shift, nb_tasks, train_samples):
    """Every task is the whole dataset under its own transformation, so a class needs no more
    samples than the one it has, however many tasks there are."""
    setting = DomainIncrementalSetting(dataset="digits", nb_tasks=nb_tasks, train_samples=train_samples,
                                       domain_shift=shift, epochs=1)
    tasks = setting.prepare_tasks()
    assert len(tasks) == nb_tasks
    for task in tasks:
        assert torch.equal(task.y_train, tasks[0].y_train) and len(task.y_train) == train_samples
        assert torch.equal(task.y_test, tasks[0].y_test) and len(task.y_test) > 300
    assert not torch.equal(tasks[-1].x_test, tasks[0].x_test)


@pytest.mark.parametrize("max_rotation", [0.0, 400.0, -361.0, float("nan"), float("inf")])
def test_rotations_that_would_repeat_a_domain_are_refused(max_rotation):
    options = {**tiny_options(DomainIncrementalSetting), "domain_shift": "rotation", "max_rotation": max_rotation}
    with pytest.raises(ConfigurationError, match="--max_rotation"):
        DomainIncrementalSetting(**options).validate()
    DomainIncrementalSetting(**{**options, "max_rotation": -90.0}).validate()  # the other way round


def test_random_rotations_draw_every_angle_with_the_seed():
    """`--random_rotations` (the DER paper's Rotated MNIST): each task's angle is drawn in
    [0, max_rotation), the first task's too, the same for the same seed; the tasks are the
    data rotated by those angles."""
    import torchvision.transforms.functional as F
    from torchvision.transforms import InterpolationMode

    options = {**tiny_options(DomainIncrementalSetting), "domain_shift": "rotation", "nb_tasks": 3}
    evenly = DomainIncrementalSetting(**options)
    assert evenly.rotation_angles() == [0.0, 60.0, 120.0]
    random = {**options, "random_rotations": True, "max_rotation": 90.0}
    drawn = DomainIncrementalSetting(**random)
    drawn.validate()
    angles = drawn.rotation_angles()
    assert len(angles) == 3 and all(0 <= angle < 90 for angle in angles) and angles[0] != 0
    assert angles == DomainIncrementalSetting(**random).rotation_angles()
    assert angles != DomainIncrementalSetting(**{**random, "seed": 1}).rotation_angles()
    unrotated = evenly.prepare_tasks()[0]  # angle 0
    for task, angle in zip(drawn.prepare_tasks(), angles):
        # the images, rotated clockwise with nearest-pixel sampling by the angle as RandomAffine draws it (float32)
        expected = F.affine(unrotated.x_test[:5], float(torch.tensor(angle, dtype=torch.float32)), [0, 0], 1.0,
                            [0.0, 0.0], interpolation=InterpolationMode.NEAREST)
        assert torch.equal(task.y_test, unrotated.y_test)
        assert (task.x_test[:5] != expected).float().mean() < 0.02  # PIL and torch round a few ties apart


def test_a_max_rotation_given_for_permutations_is_refused():
    options = tiny_options(DomainIncrementalSetting)
    with pytest.raises(ConfigurationError, match="--max_rotation 90.0 has no effect"):
        DomainIncrementalSetting(**{**options, "domain_shift": "permutation", "max_rotation": 90.0}).validate()
    DomainIncrementalSetting(**{**options, "domain_shift": "permutation"}).validate()
    with pytest.raises(ConfigurationError, match="--random_rotations True has no effect"):
        DomainIncrementalSetting(**{**options, "domain_shift": "permutation", "random_rotations": True}).validate()


@pytest.mark.parametrize("order", [{"class_order": list(range(9, -1, -1))}, {"random_class_order": True}])
def test_a_class_order_is_refused_where_every_task_holds_every_class(order):
    """Domain-incremental tasks share all classes: an order would be silently ignored."""
    with pytest.raises(ConfigurationError, match="do not apply to domain_incremental"):
        DomainIncrementalSetting(**{**tiny_options(DomainIncrementalSetting), **order}).validate()


def test_class_order_is_applied():
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "nb_tasks": 5,
                                         "class_order": [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]})
    tasks = setting.prepare_tasks()
    assert [t.classes for t in tasks][0] == [0, 1]  # continuum relabels by arrival order
    assert setting.resolved_class_order()[:2] == [9, 8]


def test_random_class_order_is_drawn_with_the_seed_and_applied_to_the_data():
    options = {**tiny_options(ClassIncrementalSetting), "nb_tasks": 5, "random_class_order": True}
    orders = {seed: ClassIncrementalSetting(**{**options, "seed": seed}).resolved_class_order() for seed in (0, 1)}
    assert sorted(orders[0]) == list(range(10)) and orders[0] != orders[1]
    assert orders[0] != list(range(10))
    shuffled = ClassIncrementalSetting(**{**options, "seed": 0})
    assert shuffled.resolved_class_order() == orders[0]  # the same seed, the same order
    given = ClassIncrementalSetting(**{**options, "seed": 0, "random_class_order": False, "class_order": orders[0]})
    for drawn, written in zip(shuffled.prepare_tasks(), given.prepare_tasks()):
        assert torch.equal(drawn.x_train, written.x_train) and torch.equal(drawn.y_test, written.y_test)


def test_assumptions_can_only_be_tightened():
    with pytest.raises(TypeError):
        @dataclass
        class Loose(TaskIncrementalSetting):
            task_labels_at_test: ClassVar[bool] = False


def test_inapplicable_method_is_refused():
    from sylvan.methods import FromScratch

    with pytest.raises(InapplicableMethodError):
        OnlineSetting(**tiny_options(OnlineSetting)).apply(FromScratch())


@pytest.mark.parametrize("options", [
    {"nb_tasks": 11}, {"nb_tasks": 0}, {"batch_size": 0}, {"class_order": [0, 1]}, {"seed": -1},
    {"accelerator": "tpu"}, {"class_order": list(range(10)), "random_class_order": True},
])
def test_invalid_values_are_refused(options):
    with pytest.raises(ConfigurationError):
        ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), **options})
