"""Class prototypes in an L2-normalized embedding space, as Continual Prototype Evolution (`cope`)
learns them: the pseudo-prototypical proxy (PPP) loss that shapes the space around them, and
their momentum update from each step's embeddings.

The PPP loss (De Lange & Tuytelaars, "Continual Prototype Evolution: Learning Online from
Non-Stationary Data Streams", ICCV 2021). For a sample i of class c in a batch B, with
embedding f_i, the prototypes p_k of the classes known so far and temperature T, the probability
that f_i is of class c, as judged against one positive u (another sample of class c in the
batch, a pseudo-prototype, or p_c itself):

    P(c | f_i; u) = exp(u.f_i / T) / (exp(u.f_i / T) + sum_{k != c} exp(p_k.f_i / T))

The attractor term averages it over the n_c positives of i (the n_c - 1 others of its class and
p_c) and takes its log; only f_i learns from it (the positives act as fixed targets). The
repellor term, for each sample j of another class, averages P(c | f_j; f_i) and P(c | f_j; p_c)
and takes log(1 - that) for every sample i of class c; both f_i and f_j learn from it. The loss
is minus the sum of both terms over the batch, divided by its size. The prototypes never learn
from the loss: they follow the embeddings by their momentum update.

Everything is computed in log space (the probabilities as log-sigmoids of a difference of
log-sums), so no temperature overflows it; the result equals the authors' code's direct
formula wherever that one is finite.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sylvan.methods.parts.contrastive import in_float32


def ppp_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, known: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """The pseudo-prototypical proxy loss of a batch of L2-normalized `embeddings` (b, d) with
    `labels` (b,), against the L2-normalized `prototypes` (classes, d, not learned) of the
    classes `known` (a boolean mask over the classes, true at every label of the batch).
    A batch whose labels are the only known class has a loss of 0 (nothing to tell apart).
    Computed in float32, out of autocast.

    Memory: b x u x classes floats, u the number of distinct labels in the batch (the repellor's
    sums over the prototypes of the classes other than each label)."""
    with in_float32(embeddings):
        embeddings, prototypes = embeddings.float(), prototypes.float()
        b, classes = len(labels), len(known)
        lowest = torch.finfo(embeddings.dtype).min  # excluded from a log-sum, without the NaN gradients of -inf
        class_ids = torch.arange(classes, device=labels.device)
        to_prototypes = embeddings @ prototypes.T / temperature  # (b, classes): p_k . f_j / T
        same = labels[:, None] == labels[None, :]
        others = ~torch.eye(b, dtype=torch.bool, device=labels.device)

        # attractor: f_i against its positives, each normalized by the other classes' prototypes
        rest = torch.logsumexp(to_prototypes.masked_fill(~known | (class_ids == labels[:, None]), lowest), 1)
        to_batch = embeddings @ embeddings.detach().T / temperature  # the positives' side is a fixed target
        to_positives = torch.cat([to_batch, to_prototypes.gather(1, labels[:, None])], 1)
        positive = torch.cat([same & others, same.new_ones(b, 1)], 1)
        log_p = F.logsigmoid(to_positives - rest[:, None]).masked_fill(~positive, float("-inf"))
        attractor = torch.logsumexp(log_p, 1) - torch.log(same.sum(1).to(embeddings.dtype))

        # repellor: each f_j of another class than c, against the class-c samples f_i and p_c
        batch_classes, position = labels.unique(return_inverse=True)
        excluded = ~known | (class_ids == batch_classes[:, None])  # (u, classes): not in the sum for that label
        rest_by_class = torch.logsumexp(torch.where(excluded, lowest, to_prototypes[:, None, :]), 2)  # (b, u)
        rest = rest_by_class.T[position]  # [i, j]: the sum for sample j over the classes other than i's
        to_pseudo = embeddings @ embeddings.T / temperature - rest
        to_prototype = to_prototypes.T[labels] - rest  # [i, j]: p_{y_i} . f_j / T
        log_not_c = torch.logaddexp(F.logsigmoid(-to_pseudo), F.logsigmoid(-to_prototype)) - math.log(2.0)
        repellor = log_not_c.masked_fill(same, 0.0).sum()

        return -(attractor.sum() + repellor) / b


def evolved_prototypes(
    prototypes: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, momentum: float
) -> torch.Tensor:
    """Each prototype moved towards the mean of its class's embeddings of a step (`sums` (classes,
    d) over `counts` (classes,)), by momentum: p_c <- normalize(momentum p_c + (1 - momentum)
    sums_c / counts_c); the prototypes of classes without embeddings stay as they are."""
    present = counts > 0
    means = sums / counts.clamp(min=1)[:, None]
    moved = F.normalize(momentum * prototypes + (1.0 - momentum) * means, dim=1)
    return torch.where(present[:, None], moved, prototypes)
