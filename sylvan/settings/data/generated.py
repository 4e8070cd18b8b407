"""The datasets made in memory, which need no download: `digits` (scikit-learn's 8x8 digits,
shipped with sylvan), `synthetic` (Gaussian class clusters) and `random_cifar10` (random images of
CIFAR-10's shape, size and labels)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from continuum.datasets import InMemoryDataset


DIGITS_FILE = Path(__file__).with_name("digits.npz")


def digits_splits(data_dir: str, size: int | None, seed: int) -> tuple[InMemoryDataset, InMemoryDataset]:
    """scikit-learn's 1,797 digits (`load_digits`; UCI's optical digits, 8x8, grey levels 0..16
    scaled to 0..255), split as `train_test_split(images, target, test_size=0.2, random_state=0,
    stratify=target)` splits them: 1,437 training and 360 test images, shipped as `digits.npz`
    (48 kB) so that a default run imports neither scikit-learn nor what it imports (pandas, pyarrow,
    scipy). `tests/settings/test_datasets.py` holds the file equal to scikit-learn's split."""
    from continuum.datasets import InMemoryDataset

    with np.load(DIGITS_FILE) as arrays:
        x_train, x_test = arrays["x_train"], arrays["x_test"]
        y_train, y_test = arrays["y_train"].astype(np.int64), arrays["y_test"].astype(np.int64)
    return InMemoryDataset(x_train, y_train), InMemoryDataset(x_test, y_test, train=False)


def make_synthetic(
    size: int | None, seed: int = 0, num_classes: int = 10, side: int = 8
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Gaussian blobs drawn as `side`x`side` grey images: one random prototype per class plus
    pixel noise. Separable but not trivially, so learning curves and forgetting are real.
    `size` is the number of training samples (default 2,000); the test set is a quarter of it.
    The prototypes depend only on `num_classes` and `side`; the samples on `seed`."""
    from continuum.datasets import InMemoryDataset

    size = 2000 if size is None else size
    prototypes = np.random.default_rng(12345).uniform(0, 255, size=(num_classes, side, side))

    def draw(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(count) % num_classes
        rng.shuffle(labels)
        noise = rng.normal(0, 60, size=(count, side, side))
        images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
        return images, labels

    rng = np.random.default_rng(seed)
    x_train, y_train = draw(size, rng)
    x_test, y_test = draw(max(num_classes, size // 4), rng)
    return InMemoryDataset(x_train, y_train), InMemoryDataset(x_test, y_test, train=False)


def synthetic_splits(data_dir: str, size: int | None, seed: int) -> tuple[InMemoryDataset, InMemoryDataset]:
    return make_synthetic(size, seed)


def make_random_images(
    train_samples: int, test_samples: int, shape: tuple[int, ...], num_classes: int, seed: int = 0
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Uniformly random uint8 images of `shape` with balanced labels, generated in memory: a
    stand-in for a dataset of that shape, size and labels where its files are not at hand, to
    measure what the pipeline (loading, augmentation, the network, the buffers) costs. There is
    nothing to learn in them: accuracy stays at chance."""
    from continuum.datasets import InMemoryDataset

    rng = np.random.default_rng(seed)

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(count) % num_classes
        rng.shuffle(labels)
        # channels last, as continuum keeps colour images (H, W, C)
        images = rng.integers(0, 256, size=(count, *shape[1:], shape[0]), dtype=np.uint8)
        return (images[..., 0] if shape[0] == 1 else images), labels

    x_train, y_train = draw(train_samples)
    x_test, y_test = draw(test_samples)
    return InMemoryDataset(x_train, y_train), InMemoryDataset(x_test, y_test, train=False)


def random_cifar10_splits(data_dir: str, size: int | None, seed: int) -> tuple[InMemoryDataset, InMemoryDataset]:
    return make_random_images(50_000, 10_000, (3, 32, 32), 10, seed)
