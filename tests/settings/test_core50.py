"""CORe50 read from its folder as the official archive unpacks it (here a generated copy with the
real layout: 11 sessions of 50 objects, PNG files named C_SS_OO_III.png, and the split file that
keeps sessions 3, 7 and 10 for testing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sylvan.errors import DataUnavailableError
from sylvan.minibatches import float_inputs
from sylvan.settings import ClassIncrementalSetting

TEST_SESSIONS = (3, 7, 10)


def write_core50(root: Path, per_object: int = 2, side: int = 128) -> Path:
    """Each image is one grey level, 4 * object + session / 11 (rounded), so tests can tell
    where it came from."""
    folder = root / "core50_128x128"
    train_ids = []
    for session in range(1, 12):
        for obj in range(1, 51):
            objects = folder / f"s{session}" / f"o{obj}"
            objects.mkdir(parents=True)
            for index in range(per_object):
                stem = f"C_{session:02d}_{obj:02d}_{index:03d}"
                grey = round(4 * obj + session / 11)
                Image.new("RGB", (side, side), (grey, grey, grey)).save(objects / f"{stem}.png")
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
            grey = float_inputs(x)[:, 0, 0, 0] * 255
            assert torch.all((grey - 4 * (y + 1)).abs() <= 1)
    assert capsys.readouterr().out == ""  # continuum's print of the split file's path is kept quiet


def test_missing_files_offline_say_where_to_put_them(tmp_path, monkeypatch, core50_root):
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match=r"core50_128x128/ \(s1/ to s11/.*core50_train.csv"):
        ClassIncrementalSetting(dataset="core50", data_dir=str(tmp_path), progress_bar=False).prepare_tasks()
    partial = tmp_path / "partial"
    (partial / "core50_128x128").mkdir(parents=True)
    np.savetxt(partial / "core50_train.csv", np.array(["C_01_01_000.png,0"]), fmt="%s")
    with pytest.raises(DataUnavailableError, match="could not be downloaded"):
        ClassIncrementalSetting(dataset="core50", data_dir=str(partial), progress_bar=False).prepare_tasks()
