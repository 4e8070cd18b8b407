"""Classification by the nearest class mean in feature space (`icarl`'s nearest mean of exemplars,
`scr`'s nearest mean of the stored samples): the means are L2-normalized, and so are the features
compared with them."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nearest_mean_scores(features: torch.Tensor, class_means: torch.Tensor) -> torch.Tensor:
    """Minus the squared distance of each sample's normalized features (flattened) to each class
    mean (rows of `class_means`); -inf for classes whose mean is NaN (nothing to average)."""
    features = F.normalize(features.flatten(1).float(), dim=1)
    means = class_means.to(features.device)
    distances = torch.cdist(features, torch.nan_to_num(means)).pow(2)
    return (-distances).masked_fill(torch.isnan(means).any(1), float("-inf"))


def class_feature_sums(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, the sum of the normalized `features` (flattened) of its samples, and their count;
    sums over chunks or workers add up to those of the whole."""
    features = F.normalize(features.flatten(1).float(), dim=1)
    sums = torch.zeros(num_classes, features.shape[1], device=features.device)
    counts = torch.zeros(num_classes, device=features.device)
    sums.index_add_(0, labels.to(features.device), features)
    counts.index_add_(0, labels.to(features.device), torch.ones(len(labels), device=features.device))
    return sums, counts


def class_means_from_sums(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The normalized class means (the normalized sums: the same direction), on the CPU; NaN
    rows for classes without samples."""
    means = F.normalize(sums, dim=1).cpu()
    return means.masked_fill((counts == 0).cpu()[:, None], float("nan"))
