"""Weights shared out among training stages, one owner per weight (PackNet's bookkeeping): which
parameters are shared out, the stage that owns each weight (`FREE`: none yet), claiming free
weights for a stage, and the weights a stage's tasks see."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

FREE = torch.iinfo(torch.int16).max  # the owner of a weight no stage has kept yet
CLASSIFIER = "classifier"  # the module holding the output layer (every built-in backbone's)


def in_classifier(name: str) -> bool:
    return CLASSIFIER in name.split(".")[:-1]


def is_packed(name: str, parameter: nn.Parameter) -> bool:
    """Whether the parameter `name` is shared out among the stages weight by weight: a layer's
    weights (two or more dimensions) before the classifier."""
    return parameter.dim() >= 2 and not in_classifier(name)


def free_owners(model: nn.Module) -> dict[str, torch.Tensor]:
    """owner[name] for every packed parameter of `model`, every weight free."""
    return {name: torch.full(p.shape, FREE, dtype=torch.int16)
            for name, p in model.named_parameters() if is_packed(name, p)}


def owners_on_device(owners: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """`owners`, moved where the parameters are (once, when the model has moved)."""
    parameters = dict(model.named_parameters())
    for name, owner in owners.items():
        if owner.device != parameters[name].device:
            owners[name] = owner.to(parameters[name].device)
    return owners


def claim(owners: dict[str, torch.Tensor], model: nn.Module, stage: int,
          choose: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> int:
    """Give `stage` the weights `choose(free, weights)` picks among those still free (boolean
    masks, per packed parameter); the number claimed."""
    parameters = dict(model.named_parameters())
    claimed = 0
    for name, owner in owners_on_device(owners, model).items():
        free = owner == FREE
        chosen = choose(free, parameters[name].detach()) & free
        owner[chosen] = stage
        claimed += int(chosen.sum())
    return claimed


def largest_share(keep: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A `choose` for `claim`: the `keep` share of the free weights with the largest magnitudes."""

    def largest(free: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        count = round(keep * int(free.sum()))
        kept = torch.zeros_like(free)
        if count:
            magnitudes = weights.abs().masked_fill(~free, -1.0).flatten()
            kept.view(-1)[magnitudes.topk(count).indices] = True
        return kept

    return largest


def visible_weights(owners: dict[str, torch.Tensor], model: nn.Module, stage: int,
                    training: int) -> dict[str, torch.Tensor]:
    """The packed parameters as the tasks of `stage` see them: the weights of that stage and the
    earlier ones, with those of later stages at zero (and the free ones, unless `stage` is the
    one `training` now, or later)."""
    parameters = dict(model.named_parameters())
    weights = {}
    for name, owner in owners_on_device(owners, model).items():
        visible = owner <= stage
        if stage >= training:
            visible |= owner == FREE
        weights[name] = parameters[name] * visible
    return weights
