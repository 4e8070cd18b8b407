"""A setting added from outside the package: class-incremental learning on a long-tailed stream.

As in Liu et al., "Long-Tailed Class Incremental Learning" (ECCV 2022): the training samples of
the classes follow an exponential profile, from every sample of the most frequent class to
`imbalance_ratio` of them for the rarest; the test sets stay balanced, so accuracy weighs every
class alike. In the "ordered" variant the classes arrive from the most frequent to the rarest; in
the "shuffled" one the sizes are dealt to the classes at random (with the seed).

The setting is a child of `class_incremental`: it inherits its assumptions (boundaries known, no
task labels at test), so every method for `class_incremental` or `online` runs on it unchanged,
and a method written for it alone would run nowhere else. Only the data change: it overrides
`prepare_tasks`.

    sylvan --plugin examples/long_tailed.py --list
    sylvan --plugin examples/long_tailed.py --setting long_tailed_class_incremental --method rehearsal \\
        --buffer_policy prs --imbalance_ratio 0.05 --shuffled_sizes true
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from sylvan.errors import ConfigurationError
from sylvan.run.task_data import TaskData
from sylvan.settings import ClassIncrementalSetting


@dataclass
class LongTailedClassIncrementalSetting(ClassIncrementalSetting):
    """Class-incremental learning whose classes have exponentially fewer training samples, from
    the most frequent to the rarest (balanced test sets)."""

    name: ClassVar[str] = "long_tailed_class_incremental"

    imbalance_ratio: float = 0.1  # fraction of its training samples the rarest class keeps (the most frequent: all)
    shuffled_sizes: bool = False  # deal the class sizes at random instead of from the first class to arrive to the last

    def validate(self) -> None:
        super().validate()
        if not 0 < self.imbalance_ratio <= 1:
            raise ConfigurationError(f"--imbalance_ratio must be in (0, 1], got {self.imbalance_ratio}")

    def kept_fractions(self) -> np.ndarray:
        """The fraction of its training samples each class keeps, by label (labels count the
        classes in their order of arrival)."""
        classes = self.num_classes
        fractions = self.imbalance_ratio ** (np.arange(classes) / max(classes - 1, 1))
        if self.shuffled_sizes:
            fractions = np.random.default_rng(self.seed).permutation(fractions)
        return fractions

    def prepare_tasks(self) -> list[TaskData]:
        tasks = super().prepare_tasks()
        fractions = self.kept_fractions()
        generator = torch.Generator().manual_seed(self.seed)
        long_tailed = []
        for task in tasks:
            keep = []
            for label in task.classes:
                members = (task.y_train == label).nonzero().squeeze(1)
                count = max(1, round(len(members) * float(fractions[label])))
                keep.append(members[torch.randperm(len(members), generator=generator)[:count]])
            kept = torch.cat(keep).sort().values  # the stream keeps its order; the loader shuffles
            long_tailed.append(replace(task, x_train=task.x_train[kept], y_train=task.y_train[kept]))
        return long_tailed
