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
