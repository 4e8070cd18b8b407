"""What the buffer policies that judge new samples by the model need from it: the gss policy's
gradient scores and the aser policy's features, handed to the admission that lives with the
policy's buffer (`sylvan.buffers.gss.GSSAdmission`, `sylvan.buffers.aser.ASERReplacement`) and
computed after the optimizer's step on the samples. A replay method holds the one its
`--buffer_policy` needs (`admission_for`, given the network, the features and the run's facts
it acts on), and nothing otherwise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sylvan.buffers import needs_scores, needs_slots
from sylvan.buffers.aser import ASERReplacement
from sylvan.buffers.gss import GSSAdmission
from sylvan.methods.parts.gradient_scores import gradient_scores, gradient_scores_with_batch

ASER_DRAWS_SEED = 50_021  # seed offset of the aser policy's draws (`Workers.seed`)


def admission_for(policy: str, options: Any, buffer: Any, network: Callable[[], nn.Module],
                  features: Callable[..., torch.Tensor], num_classes: int, workers: Any
                  ) -> GSSAdmission | ASERReplacement | None:
    """The admission buffer policy `policy` (with its `options`) needs for `buffer`, or None:
    gss's scores of the gradients of `network()` (the network as it is when a sample is judged),
    aser's slots from `features` over `num_classes` classes, its draws this worker's own
    (`workers`: the run's `Workers`)."""
    if needs_scores(policy):
        def scores(x: torch.Tensor, y: torch.Tensor, reference_x: torch.Tensor, reference_y: torch.Tensor,
                   batch: bool) -> tuple[torch.Tensor, Any]:
            compared = (network(), x, y, reference_x, reference_y)
            return gradient_scores_with_batch(*compared) if batch else (gradient_scores(*compared), None)

        return GSSAdmission(buffer, options, scores)
    if needs_slots(policy):
        return ASERReplacement(buffer, options, features, num_classes, workers.seed(ASER_DRAWS_SEED))
    return None
