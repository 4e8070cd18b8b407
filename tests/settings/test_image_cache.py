"""`--image_cache`: decoded image files kept as arrays, read back by later runs, never stale."""

from __future__ import annotations

import os
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sylvan.errors import ConfigurationError, DataUnavailableError
from sylvan.settings import DATASETS, ClassIncrementalSetting, image_folder_dataset, register_dataset
from sylvan.settings.data import decoding, image_cache
from sylvan.settings.data.decoding import decode_images
from tests.settings.test_image_folders import write_image_folder


def path_dataset(folder: Path, count: int = 6, side: int = 8):
    """An image-path dataset of `count` PNG files whose pixels are all equal to their index."""
    from continuum.datasets import InMemoryDataset
    from continuum.tasks import TaskType

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{index}.png"
        Image.new("RGB", (side, side), (index, index, index)).save(path)
        paths.append(str(path))
    return InMemoryDataset(np.array(paths), np.arange(count) % 2, data_type=TaskType.IMAGE_PATH)


def entries(cache: Path) -> list[str]:
    """The files of the cache folder but the entries' lock files (temporary files included)."""
    return sorted(path.name for path in cache.iterdir() if path.suffix != ".lock") if cache.exists() else []


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, decoding files fails: what is read comes from the cache."""
    def refuse(*args, **kwargs):
        raise AssertionError("decoded the files although the cache holds them")

    monkeypatch.setattr(decoding, "decode_files", refuse)


def test_decoded_images_are_kept_and_read_back(tmp_path, monkeypatch):
    dataset, cache = path_dataset(tmp_path / "images"), tmp_path / "cache"
    first = decode_images(dataset, cache=str(cache)).get_data()[0]
    assert first.shape == (6, 8, 8, 3) and [int(image[0, 0, 0]) for image in first] == list(range(6))
    assert len(entries(cache)) == 1 and entries(cache)[0].endswith(".npy")  # no temporary file left behind

    forbid_decoding(monkeypatch)
    again = decode_images(dataset, cache=str(cache)).get_data()
    assert np.array_equal(again[0], first) and again[0].dtype == np.uint8
    assert np.array_equal(again[1], dataset.get_data()[1])


def test_another_selection_of_files_is_another_entry(tmp_path):
    from continuum.datasets import InMemoryDataset

    dataset, cache = path_dataset(tmp_path / "images"), tmp_path / "cache"
    paths, labels, _ = dataset.get_data()
    decode_images(dataset, cache=str(cache))
    reordered = InMemoryDataset(paths[::-1], labels[::-1], data_type=dataset.data_type)
    x = decode_images(reordered, cache=str(cache)).get_data()[0]
    assert [int(image[0, 0, 0]) for image in x] == list(range(5, -1, -1))
    decode_images(InMemoryDataset(paths[:4], labels[:4], data_type=dataset.data_type), cache=str(cache))
    assert len(entries(cache)) == 3


def test_a_changed_file_is_decoded_again(tmp_path):
    dataset, cache = path_dataset(tmp_path / "images"), tmp_path / "cache"
    decode_images(dataset, cache=str(cache))
    changed = Path(dataset.get_data()[0][2])
    Image.new("RGB", (8, 8), (200, 200, 200)).save(changed)
    later = time.time() + 5  # a new modification time, whatever the file system's clock resolution
    os.utime(changed, (later, later))
    x = decode_images(dataset, cache=str(cache)).get_data()[0]
    assert int(x[2, 0, 0, 0]) == 200
    assert len(entries(cache)) == 2


def test_a_damaged_entry_is_decoded_and_written_again(tmp_path):
    dataset, cache = path_dataset(tmp_path / "images"), tmp_path / "cache"
    expected = decode_images(dataset, cache=str(cache)).get_data()[0]
    entry = cache / entries(cache)[0]
    entry.write_bytes(entry.read_bytes()[:100])  # a truncated file
    with pytest.warns(UserWarning, match="cannot be read.*decoding the images again"):
        x = decode_images(dataset, cache=str(cache)).get_data()[0]
    assert np.array_equal(x, expected)
    assert np.array_equal(np.load(entry), expected)  # written again, in the damaged entry's place
    np.save(entry, np.zeros((2, 8, 8, 3), dtype=np.uint8))  # an array of another shape
    with pytest.warns(UserWarning, match=r"holds uint8 \(2, 8, 8, 3\), not 6 RGB images"):
        assert np.array_equal(decode_images(dataset, cache=str(cache)).get_data()[0], expected)
    assert np.array_equal(np.load(entry), expected)


def test_a_cache_that_cannot_be_written_warns_and_the_run_goes_on(tmp_path, monkeypatch):
    dataset = path_dataset(tmp_path / "images")
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    with pytest.warns(UserWarning, match="cannot write to .*a_file.*not kept"):
        x = decode_images(dataset, cache=str(blocked)).get_data()[0]
    assert [int(image[0, 0, 0]) for image in x] == list(range(6))

    cache = tmp_path / "cache"
    monkeypatch.setattr(image_cache.shutil, "disk_usage", lambda path: namedtuple("usage", "free")(2**29))
    with pytest.warns(UserWarning, match="0.5 GiB free, too little"):
        decode_images(dataset, cache=str(cache))
    assert entries(cache) == []


def test_an_entry_another_worker_wrote_meanwhile_is_not_rewritten(tmp_path):
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    image_cache.store(tmp_path, "entry.npy", images)
    stamp = (tmp_path / "entry.npy").stat().st_mtime_ns
    image_cache.store(tmp_path, "entry.npy", images + 1)
    assert (tmp_path / "entry.npy").stat().st_mtime_ns == stamp
    assert np.array_equal(image_cache.load(tmp_path, "entry.npy", 2), images)


def test_entries_are_readable_as_the_umask_allows(tmp_path):
    previous = os.umask(0o022)
    try:
        image_cache.store(tmp_path, "entry.npy", np.zeros((1, 2, 2, 3), dtype=np.uint8))
    finally:
        os.umask(previous)
    assert (tmp_path / "entry.npy").stat().st_mode & 0o777 == 0o644  # others on a shared cluster may read it


def decode_slowly(dataset, cache: str, log: Path, out: Path) -> None:
    """In a child process: decode with the cache, noting each decoding of the files in `log`
    and taking a second over it, so that a second process arrives while it runs."""
    decode = decoding.decode_files

    def noted(*args, **kwargs):
        with open(log, "a") as file:
            file.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        return decode(*args, **kwargs)

    decoding.decode_files = noted
    np.save(out, decode_images(dataset, cache=cache).get_data()[0])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="starts processes by fork")
def test_processes_needing_the_same_entry_at_once_decode_it_once(tmp_path):
    import multiprocessing

    dataset, cache, log = path_dataset(tmp_path / "images"), str(tmp_path / "cache"), tmp_path / "decodings"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=decode_slowly, args=(dataset, cache, log, tmp_path / f"x{rank}.npy"))
               for rank in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert len(log.read_text().splitlines()) == 1  # one decoded; the other waited, then read the entry
    expected = np.stack([np.full((8, 8, 3), index, dtype=np.uint8) for index in range(6)])
    for rank in range(2):
        assert np.array_equal(np.load(tmp_path / f"x{rank}.npy"), expected)
    assert len(entries(Path(cache))) == 1


def test_a_missing_file_is_left_to_decoding_to_report(tmp_path):
    dataset = path_dataset(tmp_path / "images")
    Path(dataset.get_data()[0][3]).unlink()
    assert image_cache.entry_name(dataset.get_data()[0]) is None
    with pytest.raises(DataUnavailableError, match="3.png"):
        decode_images(dataset, cache=str(tmp_path / "cache"))
    assert entries(tmp_path / "cache") == []


@pytest.fixture
def mine(tmp_path):
    before = dict(DATASETS)
    register_dataset(image_folder_dataset("mine", write_image_folder(tmp_path / "mine")))
    yield
    DATASETS.clear()
    DATASETS.update(before)


def test_a_setting_reads_its_tasks_from_the_cache(tmp_path, mine, monkeypatch):
    cache = tmp_path / "cache"
    setting = ClassIncrementalSetting(dataset="mine", nb_tasks=2, image_cache=str(cache), progress_bar=False)
    tasks = setting.prepare_tasks()
    assert len(entries(cache)) == 2  # the training and the test split
    uncached = ClassIncrementalSetting(dataset="mine", nb_tasks=2, progress_bar=False).prepare_tasks()

    forbid_decoding(monkeypatch)
    for cached in (setting.prepare_tasks(), tasks):
        for task, reference in zip(cached, uncached):
            for name in ("x_train", "y_train", "x_test", "y_test"):
                assert torch.equal(getattr(task, name), getattr(reference, name))


def test_the_cache_is_refused_for_datasets_that_are_not_image_files():
    with pytest.raises(ConfigurationError, match="--image_cache /tmp/c has no effect: digits is not made of image"):
        ClassIncrementalSetting(dataset="digits", image_cache="/tmp/c").validate()
    assert DATASETS["tiny_imagenet"].image_files and DATASETS["core50"].image_files
