"""BiC's bias correction: an affine correction of the newest classes' logits, learned on a balanced
validation part of the memory."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BiasCorrection:
    """alpha * logit + beta on the logits of `classes` (a boolean mask over every class)."""

    alpha: float
    beta: float
    classes: torch.Tensor

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        classes = self.classes.to(logits.device)
        return torch.where(classes, self.alpha * logits + self.beta, logits)
