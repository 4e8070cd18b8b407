"""MNIST's file format (IDX: a magic number, the dimensions, then the raw array), read directly.

The MNIST family ships as four IDX files, gzipped or not. Reading them with NumPy gives the very
arrays torchvision's loaders give (uint8 images of shape (N, H, W), int64 labels), without
importing torchvision, and works offline from the `.gz` files alone (torchvision extracts them
only when it may download)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# the element type each IDX type code stands for (big-endian where wider than a byte)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DamagedIdxFile(OSError):
    """An IDX file that is there but cannot be read as one: `path`, and the `problem`."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path, self.problem = path, problem


def read_idx(path: Path) -> np.ndarray:
    """The array stored in the IDX file at `path` (gzipped where its name ends in .gz);
    `DamagedIdxFile` where it cannot be read as one (a gzip stream cut short, another format)."""
    try:
        raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    except (EOFError, gzip.BadGzipFile, OSError) as error:
        raise DamagedIdxFile(path, f"cannot be read: {error}") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DamagedIdxFile(path, "is not an IDX file")
    dims = raw[3]
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=dims, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    offset = 4 + 4 * dims
    if len(raw) - offset != dtype.itemsize * int(np.prod(shape)):
        raise DamagedIdxFile(path, f"holds {len(raw) - offset} bytes of data, not the {shape} its header gives")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def idx_file(folder: Path, stem: str) -> Path | None:
    """`folder/stem`, extracted or gzipped, whichever is there (None where neither is)."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def read_mnist_split(folder: Path, train: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Images (uint8, N x H x W) and labels (int64) of the training or test split of an MNIST-
    format dataset whose files are in `folder` (its `raw/`), or None where a file is missing."""
    prefix = "train" if train else "t10k"
    images, labels = idx_file(folder, f"{prefix}-images-idx3-ubyte"), split_labels_file(folder, train)
    if images is None or labels is None:
        return None
    x, y = read_idx(images), read_idx(labels).astype(np.int64)
    if x.ndim != 3 or y.shape != (len(x),):
        raise DamagedIdxFile(labels, f"does not hold the labels of the images of {images} ({x.shape}, {y.shape})")
    return x, y


def split_labels_file(folder: Path, train: bool) -> Path | None:
    """The labels file of the training or test split in `folder`, where there is one."""
    return idx_file(folder, f"{'train' if train else 't10k'}-labels-idx1-ubyte")
