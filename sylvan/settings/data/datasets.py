"""The dataset registry: CLI name -> loader, input shape, number of classes, default backbone,
standard augmentation and per-channel statistics (with whether its benchmarks normalize by them).

Every loader returns continuum datasets (train, test), so that the settings build their task
streams with continuum's scenarios whatever the source. `digits` and `synthetic` live in memory
and need no download; the others use continuum's (torchvision's) download code under `data_dir`.
Datasets stored as image files (Tiny ImageNet, CORe50) come as in-memory datasets of paths,
decoded by the setting once it has chosen the samples it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from sylvan.errors import ConfigurationError, unknown_name
from sylvan.registry import NAME_RULE, is_command_line_name
from sylvan.settings.data.generated import digits_splits, random_cifar10_splits, synthetic_splits
from sylvan.settings.data.loaders import (
    Loader,
    image_files_loader,
    mnist_format_loader,
    omniglot_loader,
    torchvision_loader,
)


@dataclass(frozen=True)
class DatasetSpec:
    """What a setting needs to know about a dataset before loading it."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    default_backbone: str
    load: Loader
    downloads: bool = False
    files_hint: str = ""
    augmentation: str = "none"  # the standard training augmentation of its benchmarks (settings/augmentation.py)
    # per-channel mean and standard deviation of its training images in [0, 1], where known
    channel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    normalized: bool = False  # its benchmarks normalize inputs by `channel_stats` (CIFAR in DER, ER-ACE, ...)
    # domains of its own that its training samples' task labels (t, 0 to domains - 1) number, in the
    # order they come (CORe50: its 8 training sessions); 0: none. Its test set is then one fixed set.
    domains: int = 0
    image_files: bool = False  # stored as image files, decoded when loaded (so `--image_cache` applies)
    resized: bool = False  # its image files are of many sizes, each resized to `input_shape` when decoded


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("digits", (1, 8, 8), 10, "mlp", digits_splits),
        DatasetSpec("synthetic", (1, 8, 8), 10, "mlp", synthetic_splits),
        DatasetSpec(
            "mnist", (1, 28, 28), 10, "mlp",
            mnist_format_loader("MNIST", "mnist", "MNIST/raw/*-ubyte.gz"), downloads=True,
            channel_stats=((0.1307,), (0.3081,)),
        ),
        DatasetSpec(
            "fashion_mnist", (1, 28, 28), 10, "mlp",
            mnist_format_loader("FashionMNIST", "fashion_mnist", "FashionMNIST/raw/*-ubyte.gz"),
            downloads=True, channel_stats=((0.2860,), (0.3530,)),
        ),
        DatasetSpec(
            # Street View House Numbers (Netzer et al., 2011), as torchvision reads its .mat files
            "svhn", (3, 32, 32), 10, "resnet18",
            torchvision_loader("SVHN", "svhn", "train_32x32.mat and test_32x32.mat"), downloads=True,
            channel_stats=((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
        ),
        DatasetSpec(
            # Describable Textures (Cimpoi et al., CVPR 2014): split 1's training and validation
            # images for training, its test images for testing, each resized to 32x32 as in CTrL
            "dtd", (3, 32, 32), 47, "resnet18",
            image_files_loader("DTD", "dtd", "dtd/images/ and dtd/labels/", ("dtd",)),
            downloads=True, image_files=True, resized=True,
        ),
        DatasetSpec(
            # Omniglot (Lake et al., Science 2015): 1,623 handwritten characters of 20 drawings, the
            # first 10 of each for training and the other 10 for testing, resized to 28x28 (as in
            # the meta-learning papers: MAML's, OSAKA's)
            "omniglot", (1, 28, 28), 1623, "cnn",
            omniglot_loader("omniglot", "omniglot-py/ (images_background/ and images_evaluation/)"),
            downloads=True, image_files=True, resized=True,
        ),
        DatasetSpec(
            "cifar10", (3, 32, 32), 10, "resnet18",
            torchvision_loader("CIFAR10", "cifar10", "cifar-10-batches-py/"), downloads=True, augmentation="crop_flip",
            channel_stats=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2615)), normalized=True,
        ),
        DatasetSpec(
            # CIFAR-10's shape, size (50,000 + 10,000), labels and pipeline, random pixels: runs the
            # Seq-CIFAR-10 pipeline with nothing to download (speed checks; accuracy is chance)
            "random_cifar10", (3, 32, 32), 10, "resnet18", random_cifar10_splits, augmentation="crop_flip",
            channel_stats=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2615)), normalized=True,
        ),
        DatasetSpec(
            "cifar100", (3, 32, 32), 100, "resnet18",
            torchvision_loader("CIFAR100", "cifar100", "cifar-100-python/"), downloads=True, augmentation="crop_flip",
            channel_stats=((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)), normalized=True,
        ),
        DatasetSpec(
            # 200 classes of 500 training and 50 test images (the official validation set, as in the
            # rehearsal papers)
            "tiny_imagenet", (3, 64, 64), 200, "resnet18",
            image_files_loader(
                "TinyImageNet200", "tiny_imagenet",
                "tiny-imagenet-200/ (wnids.txt, train/WNID/images/, val/images/, val/val_annotations.txt)",
                ("tiny-imagenet-200",),
            ),
            downloads=True, augmentation="crop_flip", image_files=True,
            channel_stats=((0.4802, 0.4480, 0.3975), (0.2770, 0.2691, 0.2821)), normalized=True,
        ),
        DatasetSpec(
            # CORe50 (Lomonaco & Maltoni, CoRL 2017): 50 objects (the classes) filmed in 11 sessions,
            # with the official split (sessions 3, 7 and 10 for testing, as core50_train.csv lists);
            # its class-incremental protocol (NC) is --initial_classes 10 --nb_tasks 9, its
            # new-instances protocol (NI) the 8 training sessions as domains: domain_incremental
            # --domain_shift dataset --nb_tasks 8
            "core50", (3, 128, 128), 50, "resnet18",
            image_files_loader(
                "Core50", "core50",
                "core50_128x128/ (s1/ to s11/, each with o1/ to o50/ of PNG files) and core50_train.csv",
                ("core50_128x128", "core50_train.csv"), scenario="domains", classification="object",
            ),
            downloads=True, domains=8, image_files=True,
        ),
    )
}


BUILT_IN_DATASETS = frozenset(DATASETS)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Make `spec` selectable as `--dataset spec.name` (from a plugin: see `image_folders` for a
    folder of one's own images). Registering a name again replaces the earlier spec; a
    built-in dataset's name is refused, and so is one that is not a word (`is_command_line_name`)."""
    if not is_command_line_name(spec.name):
        raise ConfigurationError(
            f"dataset name {spec.name!r}: it is given as --dataset NAME, so it must be {NAME_RULE}, "
            "such as 'my_dataset'"
        )
    if spec.name in BUILT_IN_DATASETS:
        raise ConfigurationError(f"dataset {spec.name!r} is built in; register yours under another name")
    DATASETS[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """The spec registered as `name`, or a clear error listing the valid names."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, list(DATASETS))
    return DATASETS[name]
