"""MNIST's IDX files read directly: the arrays torchvision's loader gives, from the gzipped files
alone (offline, nothing extracted), and a clear refusal of a file that is not IDX."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from sylvan.errors import DataUnavailableError
from sylvan.settings.data.datasets import DATASETS
from sylvan.settings.data.idx_files import read_idx, read_mnist_split


def write_idx(path, array: np.ndarray, type_code: int = 0x08, gzipped: bool = False) -> None:
    header = bytes([0, 0, type_code, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if gzipped else open)(path, "wb") as file:  # closed here: a gzip stream ends on close
        file.write(data)


@pytest.mark.parametrize("gzipped", [False, True])
def test_an_idx_file_reads_back_the_array_written(tmp_path, gzipped):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    write_idx(tmp_path / ("a.gz" if gzipped else "a"), images, gzipped=gzipped)
    read = read_idx(tmp_path / ("a.gz" if gzipped else "a"))
    assert read.dtype == np.uint8 and np.array_equal(read, images)
    wide = np.arange(-3, 3, dtype=np.int32).reshape(2, 3)
    write_idx(tmp_path / "b", wide, type_code=0x0C)
    assert np.array_equal(read_idx(tmp_path / "b"), wide) and read_idx(tmp_path / "b").dtype.isnative


def test_a_file_that_is_not_idx_or_is_cut_short_is_refused(tmp_path):
    (tmp_path / "text").write_text("not an idx file")
    with pytest.raises(OSError, match="is not an IDX file"):
        read_idx(tmp_path / "text")
    write_idx(tmp_path / "cut", np.zeros((4, 2, 2), dtype=np.uint8))
    (tmp_path / "cut").write_bytes((tmp_path / "cut").read_bytes()[:-3])
    with pytest.raises(OSError, match="holds 13 bytes of data"):
        read_idx(tmp_path / "cut")


def test_a_split_with_a_file_missing_is_none(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 2, 2), dtype=np.uint8))
    assert read_mnist_split(tmp_path, train=False) is None


def test_damaged_mnist_files_are_refused_with_the_folder(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataUnavailableError, match="MNIST/raw"):
        DATASETS["mnist"].load(str(tmp_path), None, 0)


def test_mnist_read_from_its_gzipped_files_is_torchvisions_mnist(mnist_root, tmp_path, monkeypatch):
    """The copy holds the .gz files only: they are read as they are, offline, and give the very
    arrays continuum's (torchvision's) MNIST gives once it has extracted them."""
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    train, test = DATASETS["mnist"].load(str(mnist_root), None, 0)
    from continuum.datasets import MNIST

    extracted = tmp_path / "extracted"
    monkeypatch.delenv("SYLVAN_OFFLINE")
    import shutil

    shutil.copytree(mnist_root / "MNIST", extracted / "MNIST")
    for ours, theirs in ((train, MNIST(str(extracted), train=True, download=True)),
                         (test, MNIST(str(extracted), train=False, download=True))):
        (x, y, t), (x_ref, y_ref, _) = ours.get_data(), theirs.get_data()
        assert t is None and x.dtype == x_ref.dtype and y.dtype == y_ref.dtype
        assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)
    assert len(train.get_data()[1]) == 60_000 and len(test.get_data()[1]) == 10_000


def write_mnist(raw, labels_train=None, gzipped=True) -> None:
    """A small MNIST-format dataset in `raw`: 6 training and 4 test images of 28x28."""
    raw.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gzipped else ""
    rng = np.random.default_rng(0)
    for prefix, n, labels in (("train", 6, labels_train), ("t10k", 4, None)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                  gzipped=gzipped)
        labels = np.arange(n, dtype=np.uint8) % 10 if labels is None else np.asarray(labels, dtype=np.uint8)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gzipped=gzipped)


@pytest.mark.parametrize("damage", ["truncated_gzip", "labels_out_of_range"])
def test_damaged_mnist_files_are_named_as_damaged_not_missing(tmp_path, monkeypatch, damage):
    """A gzip file cut short (EOFError from gzip), or labels beyond the dataset's classes (an
    IndexError in continuum), are damaged files: the message says so and which file, and never
    that downloads are off where they are not."""
    monkeypatch.delenv("SYLVAN_OFFLINE", raising=False)
    raw = tmp_path / "MNIST" / "raw"
    write_mnist(raw, labels_train=[0, 1, 2, 12, 4, 5] if damage == "labels_out_of_range" else None)
    if damage == "truncated_gzip":
        path = raw / "train-images-idx3-ubyte.gz"
        path.write_bytes(path.read_bytes()[:200])
        culprit = "train-images-idx3-ubyte.gz"
    else:
        culprit = "train-labels-idx1-ubyte.gz"
    with pytest.raises(DataUnavailableError) as refused:
        DATASETS["mnist"].load(str(tmp_path), None, 0)
    message = str(refused.value)
    assert f"{raw / culprit} is damaged" in message, message
    assert "SYLVAN_OFFLINE" not in message and "Delete it" in message
    if damage == "labels_out_of_range":
        assert "label 12" in message and "10 classes" in message


def test_missing_data_with_downloads_off_says_so_in_sylvans_words(tmp_path, monkeypatch):
    """Offline, torchvision's own text suggests `download=True`, an argument no sylvan user passes."""
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    with pytest.raises(DataUnavailableError) as refused:
        DATASETS["mnist"].load(str(tmp_path), None, 0)
    message = str(refused.value)
    assert "download=True" not in message, message
    assert "downloads are off (SYLVAN_OFFLINE is set)" in message and "MNIST/raw" in message
