"""A projection head over a backbone's features (Linear(d, d), ReLU, Linear(d, projection_dim)),
whose L2-normalized outputs a contrastive loss is computed on, as SimCLR and SupCon project them
(`scr`, `co2l`). The backbone's own classifier is never trained: the method classifies by the
features some other way (`scr`: the nearest class mean; `co2l`: a linear probe)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.models.cosine import require_feature_layers


def with_projection_head(model: nn.Module, name: str, projection_dim: int, method_name: str) -> nn.Module:
    """`model` with a head of `projection_dim` outputs on its features, its classifier frozen
    (never used); a `ConfigurationError` for a network without `features` and `feature_dim`
    (`name`: the backbone's, `method_name`: the method's, for the message)."""
    require_feature_layers(model, name, f"{method_name} learns and classifies by the backbone's features")
    width = model.feature_dim
    model.projection = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, projection_dim))
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Module):
        classifier.requires_grad_(False)  # no gradient ever reaches it: DDP must not wait for one
    return model


def projections(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The L2-normalized projections of `x` by `model` (one with a projection head)."""
    return F.normalize(model.projection(model.features(x).flatten(1)), dim=1)
