"""CORe50 read from its folder as the official archive unpacks it (here a generated copy with the
real layout: 11 sessions of 50 objects, PNG files named C_SS_OO_III.png, and the split file that
keeps sessions 3, 7 and 10 for testing), in its class-incremental (NC) and new-instances (NI)
protocols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sylvan.errors import ConfigurationError, DataUnavailableError
from sylvan.methods import Naive
from sylvan.minibatches import float_inputs
from sylvan.settings import ClassIncrementalSetting, DomainIncrementalSetting

TEST_SESSIONS = (3, 7, 10)
TRAIN_SESSIONS = (1, 2, 4, 5, 6, 8, 9, 11)


def write_core50(root: Path, per_object: int = 2, side: int = 128) -> Path:
    """Each image is one colour, (4 * object, 20 * session, 0), so tests can tell where it came
    from."""
    folder = root / "core50_128x128"
    train_ids = []
    for session in range(1, 12):
        for obj in range(1, 51):
            objects = folder / f"s{session}" / f"o{obj}"
            objects.mkdir(parents=True)
            for index in range(per_object):
                stem = f"C_{session:02d}_{obj:02d}_{index:03d}"
                Image.new("RGB", (side, side), (4 * obj, 20 * session, 0)).save(objects / f"{stem}.png")
                if session not in TEST_SESSIONS:
                    train_ids.append(f"{stem}.png,{obj - 1}\n")
    (root / "core50_train.csv").write_text("".join(train_ids))
    return root


@pytest.fixture(scope="module")
def core50_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_core50(tmp_path_factory.mktemp("data"))


def test_the_nc_protocol_starts_with_ten_objects_then_five_per_task(core50_root, monkeypatch, capsys):
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    tasks = ClassIncrementalSetting(
        dataset="core50", data_dir=str(core50_root), initial_classes=10, nb_tasks=9, progress_bar=False
    ).prepare_tasks()
    assert [len(task.classes) for task in tasks] == [10] + [5] * 8
    assert sum(len(task.y_train) for task in tasks) == 8 * 50 * 2  # the 8 training sessions
    assert sum(len(task.y_test) for task in tasks) == 3 * 50 * 2
    assert tasks[0].x_train.shape[1:] == (3, 128, 128) and tasks[0].x_train.dtype == torch.uint8
    for task in tasks:  # object o(k + 1) is class k, in training and test images alike
        for x, y in ((task.x_train, task.y_train), (task.x_test, task.y_test)):
            red = float_inputs(x)[:, 0, 0, 0] * 255
            assert torch.all((red - 4 * (y + 1)).abs() <= 0.5)
    assert capsys.readouterr().out == ""  # continuum's print of the split file's path is kept quiet


def test_missing_files_offline_say_where_to_put_them(tmp_path, monkeypatch, core50_root):
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match=r"core50_128x128/ \(s1/ to s11/.*core50_train.csv"):
        ClassIncrementalSetting(dataset="core50", data_dir=str(tmp_path), progress_bar=False).prepare_tasks()
    partial = tmp_path / "partial"
    (partial / "core50_128x128").mkdir(parents=True)
    np.savetxt(partial / "core50_train.csv", np.array(["C_01_01_000.png,0"]), fmt="%s")
    with pytest.raises(DataUnavailableError, match="downloads are off"):
        ClassIncrementalSetting(dataset="core50", data_dir=str(partial), progress_bar=False).prepare_tasks()


def test_images_of_another_size_are_refused_before_decoding_them_all(tmp_path, monkeypatch):
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    root = write_core50(tmp_path, per_object=1, side=32)  # as if resized
    with pytest.raises(DataUnavailableError, match=r"C_01_01_000.png is 32x32 pixels, where the dataset's images "
                                                   r"are 128x128; the files are not this dataset's, or were resized"):
        ClassIncrementalSetting(dataset="core50", data_dir=str(root), progress_bar=False).prepare_tasks()


def sessions_of(x: torch.Tensor) -> set[int]:
    return set((float_inputs(x)[:, 1, 0, 0] * 255 / 20).round().int().tolist())


def ni_setting(root: Path, **options) -> DomainIncrementalSetting:
    return DomainIncrementalSetting(
        dataset="core50", data_dir=str(root), domain_shift="dataset", progress_bar=False, **options
    )


def test_the_ni_protocol_is_one_training_session_per_task_and_one_fixed_test_set(core50_root, monkeypatch):
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    tasks = ni_setting(core50_root, nb_tasks=8).prepare_tasks()
    assert [sessions_of(task.x_train) for task in tasks] == [{session} for session in TRAIN_SESSIONS]
    for task in tasks:
        assert task.classes == list(range(50))
        assert sorted(task.y_train.tolist()) == sorted(list(range(50)) * 2)  # every object, 2 images each
        red = float_inputs(task.x_train)[:, 0, 0, 0] * 255
        assert torch.all((red - 4 * (task.y_train + 1)).abs() <= 0.5)
        assert task.x_test is tasks[0].x_test and task.y_test is tasks[0].y_test  # one set, read once
    assert sessions_of(tasks[0].x_test) == set(TEST_SESSIONS) and len(tasks[0].y_test) == 3 * 50 * 2


def test_fewer_tasks_group_consecutive_sessions(core50_root, monkeypatch):
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    tasks = ni_setting(core50_root, nb_tasks=3).prepare_tasks()
    assert [sessions_of(task.x_train) for task in tasks] == [{1, 2, 4}, {5, 6, 8}, {9, 11}]


def test_random_domain_order_shuffles_the_sessions_with_the_seed(core50_root, monkeypatch):
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    orders = {}
    for seed in (0, 1):
        tasks = ni_setting(core50_root, nb_tasks=8, random_domain_order=True, seed=seed).prepare_tasks()
        orders[seed] = [sessions_of(task.x_train) for task in tasks]
        drawn = np.random.default_rng(seed).permutation(8)
        assert orders[seed] == [{TRAIN_SESSIONS[domain]} for domain in drawn]
        assert all(task.x_test is tasks[0].x_test for task in tasks)  # the test set does not move
    assert orders[0] != orders[1]
    grouped = ni_setting(core50_root, nb_tasks=3, random_domain_order=True, seed=0).prepare_tasks()
    drawn = [TRAIN_SESSIONS[domain] for domain in np.random.default_rng(0).permutation(8)]
    assert [sessions_of(task.x_train) for task in grouped] == [set(drawn[:3]), set(drawn[3:6]), set(drawn[6:])]


def test_a_given_domain_order_is_followed(core50_root, monkeypatch):
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    tasks = ni_setting(core50_root, nb_tasks=4, domain_order=[7, 6, 5, 4, 3, 2, 1, 0]).prepare_tasks()
    assert [sessions_of(task.x_train) for task in tasks] == [{11, 9}, {8, 6}, {5, 4}, {2, 1}]


def test_the_shared_test_set_is_scored_once_per_row(core50_root, monkeypatch):
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    setting = ni_setting(core50_root, nb_tasks=4, batch_size=32, eval_batch_size=1000)

    class CountingNaive(Naive):
        name = ""  # not registered

        def predict(self, x, task_labels=None):
            self.scored += len(x)
            return super().predict(x, task_labels)

    method = CountingNaive(lr=0.05, backbone="mlp")
    method.scored = 0
    results = setting.apply(method)
    matrix = np.array(results.accuracy_matrix)
    assert matrix.shape == (4, 4)
    assert np.all(matrix == matrix[:, :1])  # each row: the accuracy on the one test set
    # once before training (the initial accuracies of forward transfer) and after each task, not once per column
    assert method.scored == (1 + 4) * 300
    test = setting.prepare_tasks()[0]
    final = float((method.predict(float_inputs(test.x_test)).argmax(1) == test.y_test).float().mean())
    assert matrix[-1, 0] == pytest.approx(final)  # the accuracy on the whole fixed test set
    confusion = np.array(results.confusion_matrix)
    assert confusion.sum() == 300, "the shared test set enters the confusion matrix once"
    assert np.trace(confusion) / 300 == pytest.approx(final)


@pytest.mark.parametrize(("options", "message"), [
    ({"nb_tasks": 9}, "more than the 8 domains of core50"),
    ({"dataset": "digits"}, "digits has no domains of its own .*core50"),
    ({"domain_shift": "sessions"}, "must be one of permutation, rotation, dataset"),
    ({"domain_order": [0, 1, 2]}, r"--domain_order must be a permutation of 0..7 \(the 8 domains of core50\)"),
    ({"domain_order": list(range(8)), "random_domain_order": True}, "contradict each other"),
    ({"domain_shift": "permutation", "random_domain_order": True}, "--random_domain_order True has no effect"),
    ({"domain_shift": "rotation", "domain_order": [1, 0]}, r"--domain_order \[1, 0\] has no effect"),
])
def test_dataset_domains_are_checked(options, message):
    with pytest.raises(ConfigurationError, match=message):
        DomainIncrementalSetting(**{"dataset": "core50", "domain_shift": "dataset", **options}).validate()


def test_training_samples_that_leave_a_task_empty_are_refused():
    from continuum.datasets import InMemoryDataset

    setting = DomainIncrementalSetting(dataset="core50", domain_shift="dataset", nb_tasks=4, train_samples=60)
    sessions = np.repeat(np.arange(6), 10)  # the samples kept hold none of the last 2 sessions
    kept = InMemoryDataset(np.zeros((60, 2, 2, 3), dtype=np.uint8), np.arange(60) % 50, sessions)
    with pytest.raises(ConfigurationError, match=r"--train_samples 60 leaves no training sample in task\(s\) \[3\]"):
        setting.domain_scenario(kept)
    assert len(setting.domain_scenario(InMemoryDataset(*kept.get_data()[:2], np.arange(60) % 8))) == 4
