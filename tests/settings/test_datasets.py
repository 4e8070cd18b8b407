from __future__ import annotations

import pytest
import torch

from sylvan.errors import ConfigurationError, DataUnavailableError, UnknownNameError
from sylvan.minibatches import float_inputs
from sylvan.settings import DATASETS, ClassIncrementalSetting, get_dataset
from sylvan.settings.data.generated import make_synthetic


def test_registry_describes_each_dataset():
    assert {"digits", "synthetic", "mnist", "fashion_mnist", "cifar10", "cifar100", "tiny_imagenet"} <= set(DATASETS)
    assert get_dataset("cifar100").num_classes == 100
    assert get_dataset("cifar10").input_shape == (3, 32, 32)
    assert get_dataset("cifar10").default_backbone == "resnet18"
    assert get_dataset("mnist").default_backbone == "mlp"
    tiny_imagenet = get_dataset("tiny_imagenet")
    assert (tiny_imagenet.input_shape, tiny_imagenet.num_classes) == ((3, 64, 64), 200)
    assert (tiny_imagenet.default_backbone, tiny_imagenet.augmentation, tiny_imagenet.normalized) == (
        "resnet18", "crop_flip", True
    )
    with pytest.raises(UnknownNameError, match="valid datasets"):
        get_dataset("imagenet42")


def test_digits_needs_no_download():
    setting = ClassIncrementalSetting(dataset="digits", progress_bar=False)
    tasks = setting.prepare_tasks()
    assert sum(len(t.y_train) for t in tasks) + sum(len(t.y_test) for t in tasks) == 1797
    assert tasks[0].x_train.shape[1:] == (1, 8, 8) and tasks[0].x_train.dtype == torch.uint8  # pixels
    inputs = float_inputs(tasks[0].x_train)
    assert inputs.dtype == torch.float32 and 0.0 <= float(inputs.min()) and float(inputs.max()) <= 1.0


def test_synthetic_has_any_size_and_is_seeded():
    train, test = make_synthetic(500, seed=3)
    assert len(train.get_data()[1]) == 500 and len(test.get_data()[1]) == 125
    again, _ = make_synthetic(500, seed=3)
    assert (train.get_data()[0] == again.get_data()[0]).all()


def test_train_samples_subsamples_stratified():
    setting = ClassIncrementalSetting(dataset="digits", train_samples=200, progress_bar=False)
    tasks = setting.prepare_tasks()
    assert sum(len(t.y_train) for t in tasks) == 200
    with pytest.raises(ConfigurationError):
        ClassIncrementalSetting(dataset="digits", train_samples=3)


def test_train_samples_is_exact_and_never_more_than_the_dataset_holds():
    """A size that does not divide by the classes is still met (the first classes take one more);
    a size beyond the dataset is refused, not silently read as all of it."""
    tasks = ClassIncrementalSetting(dataset="digits", train_samples=205, progress_bar=False).prepare_tasks()
    counts = torch.bincount(torch.cat([t.y_train for t in tasks]), minlength=10).tolist()
    assert sum(counts) == 205 and sorted(counts) == [20] * 5 + [21] * 5
    whole = ClassIncrementalSetting(dataset="digits", progress_bar=False).prepare_tasks()
    available = sum(len(t.y_train) for t in whole)
    every = ClassIncrementalSetting(dataset="digits", train_samples=available, progress_bar=False).prepare_tasks()
    assert sum(len(t.y_train) for t in every) == available
    too_many = ClassIncrementalSetting(dataset="digits", train_samples=available + 1, progress_bar=False)
    with pytest.raises(ConfigurationError, match=f"--train_samples {available + 1} is more than the {available}"):
        too_many.prepare_tasks()


def test_mnist_from_local_copy(mnist_root):
    setting = ClassIncrementalSetting(dataset="mnist", data_dir=str(mnist_root), train_samples=1000,
                                      progress_bar=False)
    tasks = setting.prepare_tasks()
    assert tasks[0].x_train.shape[1:] == (1, 28, 28)
    assert sum(len(t.y_test) for t in tasks) == 10000
    assert sum(len(t.y_train) for t in tasks) == 1000


def test_missing_data_offline_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    setting = ClassIncrementalSetting(dataset="mnist", data_dir=str(tmp_path), progress_bar=False)
    with pytest.raises(DataUnavailableError, match="MNIST/raw"):
        setting.prepare_tasks()


def test_random_cifar10_has_cifar10s_shape_size_labels_and_pipeline():
    """The stand-in for CIFAR-10 where its files are not at hand (speed checks): 50,000 + 10,000
    uint8 images of 3 x 32 x 32 with balanced labels, seeded, and CIFAR-10's augmentation,
    statistics and backbone."""
    from sylvan.settings.data.generated import make_random_images

    spec, cifar10 = get_dataset("random_cifar10"), get_dataset("cifar10")
    assert (spec.input_shape, spec.num_classes, spec.default_backbone) == ((3, 32, 32), 10, "resnet18")
    assert (spec.augmentation, spec.channel_stats, spec.normalized) == (
        cifar10.augmentation, cifar10.channel_stats, cifar10.normalized)
    assert not spec.downloads
    train, test = make_random_images(300, 50, (3, 32, 32), 10, seed=1)
    x, y, _ = train.get_data()
    assert x.shape == (300, 32, 32, 3) and x.dtype == "uint8" and sorted(set(y.tolist())) == list(range(10))
    assert all((y == c).sum() == 30 for c in range(10)) and len(test.get_data()[1]) == 50
    again, _ = make_random_images(300, 50, (3, 32, 32), 10, seed=1)
    assert (again.get_data()[0] == x).all()
    tasks = ClassIncrementalSetting(dataset="random_cifar10", train_samples=200, nb_tasks=5,
                                    progress_bar=False).prepare_tasks()
    assert len(tasks) == 5 and tasks[0].x_train.shape[1:] == (3, 32, 32) and tasks[0].x_train.dtype == torch.uint8


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_a_dataset_that_cannot_be_loaded_leaves_no_empty_folder_behind(tmp_path, monkeypatch, dataset):
    """torchvision makes DIR/MNIST/raw before it downloads: a download that fails (no network, a
    mistyped --data_dir) left empty folders; what existed before stays."""
    import continuum.datasets

    class FailingDownload:
        def __init__(self, root, train=True, download=True, **options):
            (tmp_path / "given" / "deeper" / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.delenv("SYLVAN_OFFLINE", raising=False)
    for name in ("MNIST", "CIFAR10"):
        monkeypatch.setattr(continuum.datasets, name, FailingDownload)
    (tmp_path / "given").mkdir()
    (tmp_path / "given" / "kept").mkdir()  # the user's, before the run
    with pytest.raises(DataUnavailableError, match="could not be downloaded"):
        get_dataset(dataset).load(str(tmp_path / "given" / "deeper"), None, 0)
    assert sorted(p.name for p in (tmp_path / "given").iterdir()) == ["kept"]


def test_the_shipped_digits_are_scikit_learns_split():
    """`digits.npz` holds what the run used to compute at every start (scikit-learn's digits and
    its stratified split), bit for bit."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from sylvan.settings.data.generated import digits_splits

    digits = load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target, test_size=0.2, random_state=0,
                                                        stratify=digits.target)
    train, test = digits_splits("unused", None, 0)
    for dataset, (x, y) in ((train, (x_train, y_train)), (test, (x_test, y_test))):
        shipped_x, shipped_y, _ = dataset.get_data()
        assert shipped_x.dtype == x.dtype and np.array_equal(shipped_x, x)
        assert shipped_y.dtype == y.dtype and np.array_equal(shipped_y, y)


def test_a_run_on_digits_imports_no_dataframe_library():
    """scikit-learn's digits imported scikit-learn, and with it pandas, pyarrow and scipy: about 1 s
    and 100 MB of a default run that uses none of them."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys; from sylvan.settings import ClassIncrementalSetting; from sylvan.methods import METHODS; "
            "ClassIncrementalSetting(dataset='digits', epochs=1, progress_bar=False).apply(METHODS['rehearsal']()); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'sklearn', 'pyarrow', 'scipy'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
