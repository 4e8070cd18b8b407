"""ER-AML's asymmetric metric learning: the positives and negatives each incoming sample is
contrasted with, drawn from a pool of stored samples, and the loss that pulls and pushes them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sylvan.methods.parts.contrastive import in_float32


def contrast_pairs(
    anchor_y: torch.Tensor, candidate_y: torch.Tensor, keys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each anchor, the index among the candidates of its positive and of its negative, and
    whether it has both. The anchors are the last len(anchor_y) candidates (the minibatch joins
    the stored samples). A positive has the anchor's label and is another candidate; a negative
    has a label other than the anchor's, among the anchors' labels. Each is the valid candidate
    with the largest of `keys` (candidates x anchors, uniform draws): a uniform choice, made
    without leaving the device. An anchor without a valid candidate gets index 0, and False."""
    n, m = len(candidate_y), len(anchor_y)
    same_label = candidate_y[:, None] == anchor_y[None, :]
    itself = torch.arange(n, device=candidate_y.device)[:, None] == torch.arange(n - m, n, device=candidate_y.device)
    of_the_batch = torch.isin(candidate_y, anchor_y)[:, None]
    valid_positive = same_label & ~itself
    valid_negative = ~same_label & of_the_batch
    positive = keys.masked_fill(~valid_positive, -1.0).argmax(0)
    negative = keys.masked_fill(~valid_negative, -1.0).argmax(0)
    return positive, negative, valid_positive.any(0) & valid_negative.any(0)


def asymmetric_contrastive_loss(
    anchors: torch.Tensor, contrast: torch.Tensor, anchor_y: torch.Tensor, contrast_y: torch.Tensor,
    valid: torch.Tensor, temperature: float, base_temperature: float,
) -> torch.Tensor:
    """SupCon of the anchors against the contrast samples (the module's formula), over the
    `valid` anchors and the contrast samples drawn for them: `contrast` holds each anchor's
    positive, then each anchor's negative, so contrast sample k belongs to anchor k mod N.
    Features are normalized here and the loss is computed in float32. 0 without a valid anchor.
    Invalid entries are masked, not dropped, so that the step needs no host synchronization."""
    with in_float32(anchors):
        anchors = F.normalize(anchors.float(), dim=1)
        contrast = F.normalize(contrast.float(), dim=1)
        kept = valid.repeat(2)
        logits = (anchors @ contrast.T / temperature).masked_fill(~kept[None, :], torch.finfo(torch.float32).min)
        log_probability = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positives = (anchor_y[:, None] == contrast_y[None, :]) & kept[None, :]
        mean_positive = log_probability.masked_fill(~positives, 0.0).sum(1) / positives.sum(1).clamp(min=1)
        per_anchor = -(temperature / base_temperature) * mean_positive
        return (per_anchor * valid).sum() / valid.sum().clamp(min=1)


@dataclass(frozen=True)
class ContrastPool:
    """The stored samples a step picks positives and negatives from: their labels, and their
    inputs where the draw brought them (`x`), or else their `slots` in the local buffer, from
    which the chosen few's inputs are gathered."""

    y: torch.Tensor
    x: torch.Tensor | None = None
    slots: torch.Tensor | None = None
