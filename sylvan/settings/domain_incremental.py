"""Domain-incremental learning: the same classes in every task, under shifted inputs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from sylvan.errors import ConfigurationError, refuse_if_given
from sylvan.settings.class_incremental import ClassIncrementalSetting

if TYPE_CHECKING:
    from continuum.datasets.base import _ContinuumDataset
    from continuum.scenarios import ContinualScenario


@dataclass
class DomainIncrementalSetting(ClassIncrementalSetting):
    """Every task holds all classes; task t shows them through a fixed input transformation
    (a pixel permutation, or a rotation). The first task is the untransformed data."""

    name: ClassVar[str] = "domain_incremental"
    shared_output_space: ClassVar[bool] = True

    domain_shift: str = "permutation"  # permutation or rotation
    max_rotation: float = 180.0  # rotation: task t is rotated by t * max_rotation / nb_tasks degrees (0 < |x| <= 360)

    def validate(self) -> None:
        super().validate()
        if self.domain_shift not in ("permutation", "rotation"):
            raise ConfigurationError(
                f"--domain_shift must be permutation or rotation, got {self.domain_shift!r}"
            )
        if self.class_order is not None or self.random_class_order:
            # every task holds every class: there is no order in which classes arrive
            raise ConfigurationError(
                "--class_order and --random_class_order do not apply to domain_incremental: every task holds "
                "every class"
            )
        refuse_if_given(self, "initial_classes", "every task of domain_incremental holds every class")
        if self.domain_shift != "rotation":
            refuse_if_given(self, "max_rotation", "it sets the angles of --domain_shift rotation")
        if self.domain_shift == "rotation" and not 0 < abs(self.max_rotation) <= 360:
            # beyond a full turn two tasks can share an angle; at 0 every task is the first one
            raise ConfigurationError(
                f"--max_rotation must be nonzero and at most 360 degrees either way, got {self.max_rotation}"
            )

    def make_scenario(self, dataset: _ContinuumDataset) -> ContinualScenario:
        from continuum.scenarios import Permutations, Rotations

        with warnings.catch_warnings():
            # continuum warns that tasks may miss classes; here every task holds every sample
            warnings.filterwarnings("ignore", ".*tasks without all classes.*")
            if self.domain_shift == "permutation":
                return Permutations(dataset, nb_tasks=self.nb_tasks, seed=self.seed)
            step = self.max_rotation / self.nb_tasks
            degrees = [(t * step, t * step) for t in range(self.nb_tasks)]
            return Rotations(dataset, list_degrees=degrees)
