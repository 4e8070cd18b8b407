"""`derpp`: DER++ (Buzzega et al., "Dark Experience for General Continual Learning: a Strong,
Simple Baseline", NeurIPS 2020): dark experience replay plus, on a second, independent draw
from the buffer, beta times the cross-entropy with the stored labels. Defaults: the paper's
Seq-MNIST hyperparameters for buffer 200 (lr 0.03, alpha 0.2, beta 1.0, r 128, batch 10)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sylvan.methods.der import DER


@dataclass
class DERPlusPlus(DER):
    """DER++: logit matching on one replayed group, label learning on another."""

    name: ClassVar[str] = "derpp"
    labels_second_group: ClassVar[bool] = True

    replay_size: int = 128  # r: samples in each of the two replayed groups (0: as many as the batch size)
    beta: float = 1.0  # weight of the cross-entropy on the second replayed group

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "beta")
