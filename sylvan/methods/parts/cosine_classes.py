"""LUCIR's treatment of classes in a cosine classifier: the network with a cosine classifier over
features that end before their last ReLU, new classes' weights imprinted from their samples'
features, and the margin that keeps old classes' samples away from the new classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.models.cosine import CosineClassifier, remove_last_relu, require_feature_layers


def cosine_network(model: nn.Module, name: str, num_classes: int, last_relu: bool, method_name: str) -> nn.Module:
    """`model` (the backbone `name`) with a cosine classifier over its features, which end before
    their last ReLU unless `last_relu`; a `ConfigurationError` for a network without `features`
    and `feature_dim`, or whose last ReLU cannot be found (`method_name`: for the message)."""
    require_feature_layers(model, name, f"{method_name} replaces the classifier over the backbone's features")
    if not last_relu and not remove_last_relu(model.features):
        raise ConfigurationError(
            f"{method_name} found no last ReLU to remove in {name}'s features; --last_relu true keeps the features "
            "as they are"
        )
    model.classifier = CosineClassifier(model.feature_dim, num_classes)
    return model


def imprint(weight: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, old: torch.Tensor) -> None:
    """Set each new class's weight vector (a class of `labels` outside the boolean mask `old`) to
    the normalized mean of its samples' normalized features, times the mean norm of the old
    classes' vectors."""
    with torch.no_grad():
        norm = weight[old.to(weight.device)].norm(dim=1).mean()
        for label in labels.unique().tolist():
            if not bool(old[label]):
                direction = F.normalize(features[labels == label].mean(0), dim=0)
                weight[label] = direction.to(weight.device, weight.dtype) * norm


def margin_ranking_loss(cosine: torch.Tensor, y: torch.Tensor, old: torch.Tensor, new: torch.Tensor,
                        margin: float, hard_negatives: int) -> torch.Tensor:
    """The margin ranking loss of the old classes' samples in the batch: the mean over them and
    their `hard_negatives` hardest new classes of max(0, margin - cos(own class) + cos(new class))."""
    of_old = old[y]
    if not bool(of_old.any()):
        return cosine.new_zeros(())
    own = cosine[of_old].gather(1, y[of_old][:, None])
    k = min(hard_negatives, int(new.sum()))
    hardest = cosine[of_old][:, new].topk(k, dim=1).values
    return F.relu(margin - own + hardest).mean()
