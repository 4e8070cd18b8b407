"""Domain-incremental learning: the same classes in every task, under shifted inputs: a pixel
permutation or a rotation per task, or the domains a dataset has of its own (CORe50's sessions,
its new-instances protocol)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, List, Optional

import numpy as np

from sylvan.errors import ConfigurationError, refuse_if_given
from sylvan.run.task_data import TaskData
from sylvan.settings.class_incremental import ClassIncrementalSetting
from sylvan.settings.data.arrival import arrival_order, check_arrival_order
from sylvan.settings.data.datasets import DATASETS
from sylvan.settings.data.streams import build_tasks

if TYPE_CHECKING:
    from continuum.datasets.base import _ContinuumDataset
    from continuum.scenarios import ContinualScenario

DOMAIN_SHIFTS = ("permutation", "rotation", "dataset")


@dataclass
class DomainIncrementalSetting(ClassIncrementalSetting):
    """Every task holds all classes. With a permutation or a rotation, task t shows them through
    a fixed input transformation, the first task being the untransformed data (but with
    `--random_rotations`, whose every angle is drawn). With the
    dataset's own domains (`--domain_shift dataset`), its D domains, in their order or in the one
    `--domain_order` gives or `--random_domain_order` draws, are split into `nb_tasks` consecutive
    groups (an even split, the remainder going to the first tasks: one domain per task when
    nb_tasks = D), and every task is scored on the dataset's one fixed test set, so each row of the
    accuracy matrix repeats one accuracy, measured once."""

    name: ClassVar[str] = "domain_incremental"
    shared_output_space: ClassVar[bool] = True

    # permutation, rotation, or dataset (the dataset's own domains: core50's 8 training sessions)
    domain_shift: str = "permutation"
    max_rotation: float = 180.0  # rotation: task t is rotated by t * max_rotation / nb_tasks degrees (0 < |x| <= 360)
    # rotation: draw each task's angle uniformly in [0, max_rotation) with the seed instead (Rotated MNIST as in the
    # DER paper), the first task's too
    random_rotations: bool = False
    # dataset: the order in which its domains arrive, a permutation of 0..D-1 (default: the dataset's order)
    domain_order: Optional[List[int]] = None
    random_domain_order: bool = False  # dataset: shuffle the order of its domains with the seed

    def validate(self) -> None:
        super().validate()
        if self.domain_shift not in DOMAIN_SHIFTS:
            raise ConfigurationError(
                f"--domain_shift must be one of {', '.join(DOMAIN_SHIFTS)}, got {self.domain_shift!r}"
            )
        domains = self.dataset_spec.domains
        if self.domain_shift == "dataset" and not domains:
            with_domains = [name for name, spec in DATASETS.items() if spec.domains]
            raise ConfigurationError(
                f"--domain_shift dataset: {self.dataset} has no domains of its own (datasets that have: "
                f"{', '.join(with_domains)}); use --domain_shift permutation or rotation"
            )
        if self.domain_shift == "dataset" and self.nb_tasks > domains:
            raise ConfigurationError(
                f"--nb_tasks {self.nb_tasks} is more than the {domains} domains of {self.dataset}: each task "
                f"needs at least one (--nb_tasks {domains}: one domain per task)"
            )
        if self.domain_shift == "dataset":
            of = f" (the {domains} domains of {self.dataset})"
            check_arrival_order("domain", self.domain_order, self.random_domain_order, domains, of)
        else:
            why = "it orders the dataset's own domains (--domain_shift dataset)"
            refuse_if_given(self, "domain_order", why)
            refuse_if_given(self, "random_domain_order", why)
        if self.class_order is not None or self.random_class_order:
            # every task holds every class: there is no order in which classes arrive
            raise ConfigurationError(
                "--class_order and --random_class_order do not apply to domain_incremental: every task holds "
                "every class"
            )
        refuse_if_given(self, "initial_classes", "every task of domain_incremental holds every class")
        if self.domain_shift != "rotation":
            refuse_if_given(self, "max_rotation", "it sets the angles of --domain_shift rotation")
            refuse_if_given(self, "random_rotations", "it draws the angles of --domain_shift rotation")
        if self.domain_shift == "rotation" and not 0 < abs(self.max_rotation) <= 360:
            # beyond a full turn two tasks can share an angle; at 0 every task is the first one
            raise ConfigurationError(
                f"--max_rotation must be nonzero and at most 360 degrees either way, got {self.max_rotation}"
            )

    def resolved_domain_order(self) -> list[int]:
        """The dataset's domains in the order they arrive: `--domain_order`, or a permutation drawn
        with the seed (`--random_domain_order`, the same draw as `--random_class_order`'s), or
        the dataset's own order."""
        return arrival_order(self.domain_order, self.random_domain_order, self.dataset_spec.domains, self.seed)

    def prepare_tasks(self) -> list[TaskData]:
        if self.domain_shift != "dataset":
            return super().prepare_tasks()
        from continuum.scenarios import InstanceIncremental

        train, test = self.load_splits()
        return build_tasks(self.domain_scenario(train), InstanceIncremental(test, nb_tasks=1))

    def domain_groups(self) -> np.ndarray:
        """The task of each of the dataset's domains (indexed by domain): the domains, in the order
        they arrive, split into `nb_tasks` consecutive groups, an even split with the remainder
        going to the first tasks."""
        base, extra = divmod(self.dataset_spec.domains, self.nb_tasks)
        sizes = [base + (1 if task < extra else 0) for task in range(self.nb_tasks)]
        groups = np.empty(self.dataset_spec.domains, dtype=np.int64)
        groups[self.resolved_domain_order()] = np.repeat(np.arange(self.nb_tasks), sizes)
        return groups

    def domain_scenario(self, train: _ContinuumDataset) -> ContinualScenario:
        """The training set split into tasks by its samples' domains (their task labels)."""
        from continuum.datasets import InMemoryDataset
        from continuum.scenarios import InstanceIncremental

        x, y, t = train.get_data()
        domains = self.dataset_spec.domains
        if t is None or len(t) == 0 or not 0 <= t.min() <= t.max() < domains:
            raise ConfigurationError(f"{self.dataset}'s training samples do not carry its {domains} domains")
        tasks = self.domain_groups()[t]
        missing = sorted(set(range(self.nb_tasks)) - set(np.unique(tasks).tolist()))
        if missing:
            cause = "the training set" if self.train_samples is None else f"--train_samples {self.train_samples}"
            raise ConfigurationError(
                f"{cause} leaves no training sample in task(s) {missing} of {self.dataset}'s domains"
                + ("" if self.train_samples is None else "; raise it, or leave it out")
            )
        return InstanceIncremental(InMemoryDataset(x, y, tasks, data_type=train.data_type, train=train.train))

    def make_scenario(self, dataset: _ContinuumDataset) -> ContinualScenario:
        if self.domain_shift == "dataset":  # a training set's (`prepare_tasks` keeps the test set whole)
            return self.domain_scenario(dataset)
        permutations, rotations = transformation_scenarios()
        if self.domain_shift == "permutation":
            return permutations(dataset, nb_tasks=self.nb_tasks, seed=self.seed)
        return rotations(dataset, list_degrees=[(angle, angle) for angle in self.rotation_angles()])

    def rotation_angles(self) -> list[float]:
        """Each task's angle in degrees (`--domain_shift rotation`): t * max_rotation / nb_tasks
        for task t, or with `--random_rotations` drawn uniformly in [0, max_rotation) with the seed."""
        if self.random_rotations:
            return np.random.default_rng(self.seed).uniform(0.0, self.max_rotation, self.nb_tasks).tolist()
        step = self.max_rotation / self.nb_tasks
        return [t * step for t in range(self.nb_tasks)]


@functools.cache
def transformation_scenarios() -> tuple[type, type]:
    """continuum's `Permutations` and `Rotations`, whose every task is the whole dataset under
    its transformation, without the split into `nb_tasks` parts of the dataset that they inherit
    from `InstanceIncremental` and never use. That split fails ("Too many tasks ... leading to
    empty tasks") wherever every class has fewer samples than there are tasks: 40 tasks of
    digits' test set (about 36 samples a class), or 10 of `--train_samples 60`."""
    from continuum.scenarios import Permutations, Rotations

    def whole_dataset(scenario: Any, nb_tasks: int) -> int:
        x, y, _ = scenario.cl_dataset.get_data()
        scenario.dataset = (x, y, np.zeros(len(y), dtype=np.int64))  # task labels: set per task when indexed
        return nb_tasks

    return (type("WholeDatasetPermutations", (Permutations,), {"_setup": whole_dataset}),
            type("WholeDatasetRotations", (Rotations,), {"_setup": whole_dataset}))
