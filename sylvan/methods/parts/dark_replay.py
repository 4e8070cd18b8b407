"""DER++'s replayed terms (Buzzega et al., "Dark Experience for General Continual Learning: a
Strong, Simple Baseline", NeurIPS 2020), which `derpp` and LODE's `lode_derpp` add to the loss of
their incoming samples, each in its own step."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def with_dark_replay(loss: torch.Tensor, logits: torch.Tensor, incoming: int, matched: dict[str, torch.Tensor],
                     labelled: dict[str, torch.Tensor], alpha: float, beta: float) -> torch.Tensor:
    """`loss` (the incoming samples') plus alpha times the mean squared error between the logits
    of the first replayed group (`matched`, after the `incoming` rows of `logits`) and the logits
    stored with it, plus beta times the cross-entropy of the second group (`labelled`, after it)
    with its stored labels; `loss` alone while nothing was replayed. A zero weight leaves its term
    out."""
    if not matched:
        return loss
    boundary = incoming + len(matched["y"])
    if alpha > 0:
        loss = loss + alpha * F.mse_loss(logits[incoming:boundary], matched["logits"])
    if beta > 0:
        loss = loss + beta * F.cross_entropy(logits[boundary:], labelled["y"])
    return loss
