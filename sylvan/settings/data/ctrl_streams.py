"""The streams of the CTrL benchmark (Veniat, Denoyer, Ranzato, "Efficient Continual Learning with
Modular Networks and Task Driven Priors", ICLR 2021; facebookresearch/CTrLBenchmark,
`ctrl/streams/*.yaml`), as plans of the `dataset_stream` setting (`--stream s_minus`, ...).

Each stream probes one kind of transfer through its last task:

- `s_minus`: the first task (CIFAR-10, 400 training and 200 validation samples per class) comes
  back last with 10 times fewer samples (direct transfer);
- `s_plus`: the first task, with few samples, comes back last with 10 times more (forgetting of
  what a later, larger task overwrites);
- `s_in`: the first task (MNIST on a coloured background) comes back last on a new background,
  with 5 and 3 samples per class (transfer at the input);
- `s_out`: the first task comes back last with its labels permuted and 10 times fewer samples
  (transfer at the output);
- `s_pl`: five unrelated tasks, the last one large (plasticity);
- `s_long`: 100 tasks of 5 classes each drawn from one of five datasets, large (1,000 and 500
  samples per class) or small (5 and 3) at random: half are large among the first 20, a quarter
  up to the 40th, none after.

In between come four distractor tasks, one per dataset (MNIST, DTD, Fashion-MNIST, SVHN), 40 and
20 samples per class; every task has 10 classes but those of `s_long`. A task's training samples
here are CTrL's training and validation samples of it together: a method that selects among
candidates holds out its own validation share (a third matches CTrL's 2 to 1).

Each stream comes in two versions of the same structure (task sizes, which task returns and how,
the order): the paper's datasets (`s_minus`, ...: CIFAR-10, MNIST, DTD, Fashion-MNIST, SVHN,
CIFAR-100, brought to 3x32x32 as CTrL does), and an offline version (`s_minus_offline`, ...) made
of what needs no download but MNIST's files: MNIST stands for CIFAR-10 (the task that returns),
`digits` for MNIST, `synthetic` for DTD and CIFAR-100, and MNIST under two fixed pixel
permutations for Fashion-MNIST and SVHN (unrelated to MNIST for a network that does not share
weights across positions). A new background is a recolouring of the grey levels."""

from __future__ import annotations

import numpy as np

from sylvan.settings.data.dataset_streams import TaskPlan
from sylvan.settings.data.datasets import get_dataset

ALL_CLASSES = tuple(range(10))
PERMUTED_LABELS = (9, *range(9))  # s_out's last task: the first task's classes, each under another label
LARGE, SMALL, TINY = (400, 200), (40, 20), (5, 3)  # training and validation samples per class
LONG_LENGTH = 100
LONG_CLASSES = 5
LONG_LARGE, LONG_SMALL = (1000, 500), (5, 3)
LONG_LARGE_SHARE = ((20, 0.5), (40, 0.25))  # (tasks before, chance of a large task), then no large task
LONG_SEED = 17  # CTrL's `split_seed`: S_long is one fixed stream

# each dataset of the paper's streams, as (dataset, transformation, parameter), in each version
PAPER_ROLES = {"cifar10": ("cifar10", "none", 0), "mnist": ("mnist", "none", 0), "dtd": ("dtd", "none", 0),
               "fashion_mnist": ("fashion_mnist", "none", 0), "svhn": ("svhn", "none", 0),
               "cifar100": ("cifar100", "none", 0)}
OFFLINE_ROLES = {"cifar10": ("mnist", "none", 0), "mnist": ("digits", "none", 0), "dtd": ("synthetic", "none", 0),
                 "fashion_mnist": ("mnist", "permute", 101), "svhn": ("mnist", "permute", 202),
                 "cifar100": ("synthetic", "invert", 0)}
LONG_DATASETS = ("mnist", "svhn", "cifar10", "fashion_mnist", "cifar100")  # CTrL's md_tree_nodtd
BACKGROUNDS = (1, 2)  # recolouring seeds of s_in's first and last backgrounds

# the five-task streams: (dataset, classes, samples, background) per task
DISTRACTORS = (("mnist", ALL_CLASSES, SMALL, None), ("dtd", ALL_CLASSES, SMALL, None),
               ("fashion_mnist", ALL_CLASSES, SMALL, None), ("svhn", ALL_CLASSES, SMALL, None))
SHORT_STREAMS = {
    "s_minus": (("cifar10", ALL_CLASSES, LARGE, None), *DISTRACTORS, ("cifar10", ALL_CLASSES, SMALL, None)),
    "s_plus": (("cifar10", ALL_CLASSES, SMALL, None), *DISTRACTORS, ("cifar10", ALL_CLASSES, LARGE, None)),
    "s_in": (("mnist", ALL_CLASSES, LARGE, BACKGROUNDS[0]), ("cifar10", ALL_CLASSES, SMALL, None), *DISTRACTORS[1:],
             ("mnist", ALL_CLASSES, TINY, BACKGROUNDS[1])),
    "s_out": (("cifar10", ALL_CLASSES, LARGE, None), *DISTRACTORS, ("cifar10", PERMUTED_LABELS, SMALL, None)),
    "s_pl": (*DISTRACTORS, ("cifar10", ALL_CLASSES, LARGE, None)),
}
STREAMS = (*SHORT_STREAMS, "s_long")
OFFLINE_SUFFIX = "_offline"


def stream_names() -> list[str]:
    """Every CTrL stream's name, each also in its offline version."""
    return [variant for name in STREAMS for variant in (name, name + OFFLINE_SUFFIX)]


def is_ctrl_stream(name: str) -> bool:
    """Whether `name` is one of the CTrL streams, in either version."""
    return name.removesuffix(OFFLINE_SUFFIX) in STREAMS


def ctrl_plan(name: str) -> list[TaskPlan]:
    """The tasks of the CTrL stream `name` (`STREAMS`, or one of them with `_offline`)."""
    stream = name.removesuffix(OFFLINE_SUFFIX)
    roles = OFFLINE_ROLES if name.endswith(OFFLINE_SUFFIX) else PAPER_ROLES
    if stream == "s_long":
        return long_plan(roles)
    return [planned(roles, dataset, classes, samples, background)
            for dataset, classes, samples, background in SHORT_STREAMS[stream]]


def planned(roles: dict[str, tuple[str, str, int]], dataset: str, classes: tuple[int, ...],
            samples: tuple[int, int], background: int | None) -> TaskPlan:
    """One task: `classes` of the paper's `dataset` as `roles` stands for it, its training and
    validation `samples` per class together, recoloured with seed `background` where given."""
    name, transformation, parameter = roles[dataset]
    if background is not None:
        transformation, parameter = "recolour", background
    return TaskPlan(name, classes, transformation, parameter, sum(samples))


def long_plan(roles: dict[str, tuple[str, str, int]]) -> list[TaskPlan]:
    """S_long: each task a dataset drawn uniformly, 5 of its classes, large or small as
    `LONG_LARGE_SHARE` schedules. Both versions draw the same datasets and sizes; each draws
    the classes among those of the dataset it uses."""
    structure = np.random.default_rng(np.random.SeedSequence(LONG_SEED, spawn_key=(0,)))
    draws = np.random.default_rng(np.random.SeedSequence(LONG_SEED, spawn_key=(1,)))
    plans = []
    for task in range(LONG_LENGTH):
        dataset = LONG_DATASETS[int(structure.integers(len(LONG_DATASETS)))]
        large = next((share for before, share in LONG_LARGE_SHARE if task < before), 0.0)
        samples = LONG_LARGE if structure.random() < large else LONG_SMALL
        available = get_dataset(roles[dataset][0]).num_classes
        classes = tuple(int(c) for c in draws.choice(available, size=LONG_CLASSES, replace=False))
        plans.append(planned(roles, dataset, classes, samples, None))
    return plans
