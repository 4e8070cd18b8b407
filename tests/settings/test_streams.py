"""Reading continuum task sets into tensors: the whole-array conversion of uint8 images (and
their rotations and pixel permutations) gives exactly what the task set's own per-sample
transformation gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from continuum import ClassIncremental, Permutations, Rotations
from continuum.datasets import InMemoryDataset

from sylvan.minibatches import float_inputs
from sylvan.settings.data.decoding import images_at_once, materialize, materialize_per_sample
from sylvan.settings.data.streams import build_tasks


def image_arrays(shape: tuple[int, ...], n: int = 120) -> InMemoryDataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return InMemoryDataset(x, np.arange(n) % 4)


@pytest.mark.parametrize("shape", [(9, 7), (6, 5, 3)], ids=["grayscale", "rgb"])
def test_whole_array_conversion_is_exactly_per_sample_to_tensor(shape):
    for taskset in ClassIncremental(image_arrays(shape), increment=2):
        converted = images_at_once(taskset)
        assert converted is not None
        x, y = converted
        expected_x, expected_y = materialize_per_sample(taskset)
        # kept as uint8 pixels, a quarter of the memory; minibatches make them the same floats
        assert x.dtype == torch.uint8 and expected_x.dtype == torch.float32
        assert y.dtype == expected_y.dtype == torch.int64
        assert x.shape == expected_x.shape  # channels first
        assert torch.equal(float_inputs(x), expected_x) and torch.equal(y, expected_y)


@pytest.mark.parametrize("shape", [(9, 7), (6, 5, 3)], ids=["grayscale", "rgb"])
def test_pixel_permutations_at_once_are_exactly_per_sample(shape):
    scenario = Permutations(image_arrays(shape), nb_tasks=3, seed=4)
    converted = []
    for taskset in scenario:
        at_once = images_at_once(taskset)
        assert at_once is not None
        per_sample = materialize_per_sample(taskset)
        assert torch.equal(float_inputs(at_once[0]), per_sample[0]) and torch.equal(at_once[1], per_sample[1])
        converted.append(at_once[0])
    assert not torch.equal(converted[1], converted[2])  # each task its own permutation
    several_tasks = scenario[0:3]  # samples of three tasks, each with its task's permutation
    at_once, per_sample = images_at_once(several_tasks), materialize_per_sample(several_tasks)
    assert at_once is not None and len(at_once[1]) == 3 * 120
    assert torch.equal(float_inputs(at_once[0]), per_sample[0]) and torch.equal(at_once[1], per_sample[1])


@pytest.mark.parametrize("shape", [(9, 7), (6, 5, 3), (28, 28)], ids=["grayscale", "rgb", "mnist-sized"])
def test_rotations_at_once_are_exactly_per_sample(shape):
    """Rotated by PIL per sample or by one gather of the whole array: the same pixels, at angles
    where nearest-neighbour sampling lands on ties (past 90 degrees, negative, beyond a turn)."""
    degrees = [0, 90, 33.3, 171.7, 114.6531, -45, 270, 359.5]
    scenario = Rotations(image_arrays(shape), list_degrees=[(d, d) for d in degrees])
    converted = []
    for taskset in scenario:
        at_once = images_at_once(taskset)
        assert at_once is not None and at_once[0].dtype == torch.uint8
        per_sample = materialize_per_sample(taskset)
        assert torch.equal(float_inputs(at_once[0]), per_sample[0]) and torch.equal(at_once[1], per_sample[1])
        converted.append(at_once[0])
    assert not torch.equal(converted[0], converted[3])
    several_tasks = scenario[0:len(degrees)]
    at_once, per_sample = images_at_once(several_tasks), materialize_per_sample(several_tasks)
    assert at_once is not None
    assert torch.equal(float_inputs(at_once[0]), per_sample[0]) and torch.equal(at_once[1], per_sample[1])


def test_a_rotation_that_fills_with_a_value_is_exactly_per_sample():
    from torchvision import transforms

    taskset = ClassIncremental(image_arrays((9, 9)), increment=2)[0]
    taskset.trsf = transforms.Compose([transforms.RandomAffine(degrees=(30, 30), fill=200), transforms.ToTensor()])
    at_once = images_at_once(taskset)
    assert at_once is not None
    expected = materialize_per_sample(taskset)[0]
    assert torch.equal(float_inputs(at_once[0]), expected) and (expected == 200 / 255).any()


def test_other_transformations_are_applied_sample_by_sample():
    """A rotation drawn per sample from a range, or a translation, is random: read sample by sample."""
    from torchvision import transforms

    for step in (transforms.RandomAffine(degrees=(0, 90)), transforms.RandomAffine(degrees=0, translate=(0.1, 0.1)),
                 transforms.RandomAffine(degrees=(30, 30), interpolation=transforms.InterpolationMode.BILINEAR)):
        taskset = ClassIncremental(image_arrays((9, 9)), increment=2)[0]
        taskset.trsf = transforms.Compose([step, transforms.ToTensor()])
        assert images_at_once(taskset) is None
        assert materialize(taskset)[0].dtype == torch.float32


def test_other_dtypes_are_applied_sample_by_sample():
    x = np.random.default_rng(0).random((20, 8, 8)).astype(np.float32)
    for taskset in ClassIncremental(InMemoryDataset(x, np.arange(20) % 2), increment=1):
        assert images_at_once(taskset) is None


def test_either_path_leaves_the_global_generator_in_the_same_state():
    """The model is initialized from torch's global generator after the data are read: a seed's
    run must not depend on which path read them."""
    rotated = Rotations(image_arrays((9, 7)), list_degrees=[(10, 10), (40, 40)])
    for taskset in (ClassIncremental(image_arrays((9, 7)), increment=2)[0], rotated[1], rotated[0:2]):
        assert images_at_once(taskset) is not None
        torch.manual_seed(3)
        materialize_per_sample(taskset)  # a rotation draws its (one possible) angle for each sample
        expected = torch.rand(4)
        torch.manual_seed(3)
        materialize(taskset)
        assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("setting_name", ["class_incremental", "domain_incremental"])
def test_data_prepared_before_the_run_gives_the_same_run(setting_name):
    """The command line loads the data before it makes the run's folder (the run's `stages`); the
    run must be the one `apply` gives when it loads the data itself, although loading draws
    from the global generator that then initializes the model."""
    from sylvan.methods import Naive
    from sylvan.settings import get_setting

    def run(prepare: bool) -> list[list[float]]:
        setting = get_setting(setting_name)(dataset="synthetic", train_samples=200, nb_tasks=2, epochs=1,
                                            progress_bar=False, seed=3)
        stages = None
        if prepare:
            stages = setting.stages()
            torch.rand(5)  # whatever runs in between does not matter either
        return setting.apply(Naive(lr=0.05), stages=stages).accuracy_matrix

    assert run(prepare=True) == run(prepare=False)


def test_tasks_read_by_different_paths_share_one_dtype():
    """uint8 pixels for one split and floats for the other (here, test images given as floats)
    would not concatenate: the tasks then hold floats throughout, with the same values."""
    pixels = image_arrays((6, 6))
    x, y, _ = pixels.get_data()
    as_floats = InMemoryDataset(x.astype(np.float32) / 255, y, train=False)
    tasks = build_tasks(ClassIncremental(pixels, increment=2), ClassIncremental(as_floats, increment=2))
    assert {task.x_train.dtype for task in tasks} == {task.x_test.dtype for task in tasks} == {torch.float32}
    same_path = build_tasks(ClassIncremental(pixels, increment=2), ClassIncremental(pixels, increment=2))
    assert same_path[0].x_train.dtype == torch.uint8
    assert torch.equal(tasks[0].x_train, float_inputs(same_path[0].x_train))


def test_a_one_task_test_scenario_is_every_tasks_test_set_read_once():
    """A dataset with one fixed test set (CORe50's NI protocol) gives every task the same test
    tensors, converted once where the splits were read by different paths."""
    from continuum import InstanceIncremental

    pixels = image_arrays((6, 6))
    x, y, _ = pixels.get_data()
    as_floats = InMemoryDataset(x.astype(np.float32) / 255, y)
    for train in (pixels, as_floats):  # floats for training: the uint8 test pixels are converted
        tasks = build_tasks(InstanceIncremental(train, nb_tasks=3), InstanceIncremental(pixels, nb_tasks=1))
        assert len(tasks) == 3
        assert all(task.x_test is tasks[0].x_test and task.y_test is tasks[0].y_test for task in tasks)
        assert len(tasks[0].y_test) == len(y)
        assert all(task.classes == sorted(set(y.tolist())) for task in tasks)
    with pytest.raises(ValueError, match="same number of tasks"):
        build_tasks(InstanceIncremental(pixels, nb_tasks=3), InstanceIncremental(pixels, nb_tasks=2))


def test_a_run_frees_the_data_of_the_runs_before_it(monkeypatch):
    """A finished run's objects may reference one another (a method and its learner), so that
    its tasks' tensors would be freed only by a full collection of the cyclic garbage: the next
    run collects it before it loads its own data, so a loop of runs holds one run's data, not all."""
    import gc
    import weakref

    from sylvan.methods import Rehearsal
    from sylvan.settings import ClassIncrementalSetting
    from sylvan.settings.data import loading
    from tests.conftest import tiny_options

    monkeypatch.setattr(loading, "FREE_FROM_BYTES", 1)  # tiny data: collect all the same

    def run() -> weakref.ReferenceType:
        """Run, and return a weak reference to the first task's training inputs."""
        setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting))
        stages = setting.stages()
        first = weakref.ref(stages.tasks[0].x_train)
        setting.apply(Rehearsal(buffer_size=20), stages=stages)
        return first

    enabled = gc.isenabled()
    gc.disable()  # no automatic collection: only the one the next run asks for
    try:
        first = run()
        run()
        assert first() is None
    finally:
        if enabled:
            gc.enable()
