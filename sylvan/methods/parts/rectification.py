"""IL2M's rectification of old classes' scores: per-class score means, and the factors that rescale
old classes by the ratio of their means and the tasks' confidences."""

from __future__ import annotations

import torch


def class_score_means(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, the mean score of the class on its own samples (0 where it has none), and the
    samples counted."""
    own = logits.gather(1, labels[:, None]).squeeze(1).double()
    sums = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, own)
    counts = torch.bincount(labels, minlength=num_classes)
    return (sums / counts.clamp(min=1)).float(), counts


def rectification_factors(
    initial_means: torch.Tensor, current_means: torch.Tensor, class_confidences: torch.Tensor,
    latest_confidence: float, old: torch.Tensor,
) -> torch.Tensor:
    """IL2M's factor for each class's score (eq. 1): for the `old` classes, (initial mean /
    current mean) x (`latest_confidence` / the confidence of the task that brought the class);
    1 for the other classes, and for old classes where a mean or a confidence is not positive."""
    valid = old & (initial_means > 0) & (current_means > 0) & (class_confidences > 0) & (latest_confidence > 0)
    ratios = initial_means / current_means.clamp(min=1e-12) * latest_confidence / class_confidences.clamp(min=1e-12)
    return torch.where(valid, ratios, torch.ones_like(ratios))
