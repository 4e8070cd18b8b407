"""The losses distillation-based methods (`lwf`, `icarl`, `bic`, `wa`, ...) share, and the frozen
copy of a model they distil from (their teacher is a part: `sylvan.methods.parts.teacher`)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` in evaluation mode whose parameters take no gradient."""
    teacher = copy.deepcopy(model).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015): KL(softmax(teacher / T) || softmax(student / T)),
    times T^2 so that its gradients keep their scale as T changes; mean over the batch."""
    log_student = F.log_softmax(student / temperature, dim=1)
    soft_teacher = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_student, soft_teacher, reduction="batchmean") * temperature**2


def old_share_weighted_loss(
    logits: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor | None, active: torch.Tensor, old: torch.Tensor,
    temperature: float, times_temperature_squared: bool = True,
) -> torch.Tensor:
    """BiC's and WA's loss: (1 - lambda) times the cross-entropy over the `active` classes plus
    lambda times the distillation of `teacher` on the `old` classes, lambda = old / active classes
    (boolean masks). The distillation is `distillation_loss`, or without `times_temperature_squared`
    the cross-entropy of the softened outputs as WA's paper writes it (the same gradients divided by
    T^2). The cross-entropy alone without a teacher or old classes."""
    classification = F.cross_entropy(logits.masked_fill(~active, float("-inf")), y)
    if teacher is None or not bool(old.any()):
        return classification
    share = float(old.sum()) / float(active.sum())
    distillation = distillation_loss(logits[:, old], teacher[:, old], temperature)
    if not times_temperature_squared:
        distillation = distillation / temperature**2
    return (1 - share) * classification + share * distillation
