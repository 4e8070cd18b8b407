"""What the buffer policies that judge new samples by the model need from it: the gss policy's
gradient scores and the aser policy's features, handed to the admission that lives with the
policy's buffer (`sylvan.buffers.gss.GSSAdmission`, `sylvan.buffers.aser.ASERReplacement`) and
computed after the optimizer's step on the samples. A replay method holds the one its
`--buffer_policy` needs (`admission_for`), and nothing otherwise."""

from __future__ import annotations

from typing import Any

import torch

from sylvan.buffers import needs_scores, needs_slots
from sylvan.buffers.aser import ASERReplacement
from sylvan.buffers.gss import GSSAdmission
from sylvan.methods.parts.gradient_scores import gradient_scores, gradient_scores_with_batch

ASER_DRAWS_SEED = 50_021  # seed offset of the aser policy's draws (`Workers.seed`)


def admission_for(method: Any, buffer: Any) -> GSSAdmission | ASERReplacement | None:
    """The admission `method`'s `--buffer_policy` needs for `buffer`, given what it computes from
    the method's network, or None."""
    if needs_scores(method.buffer_policy):
        def scores(x: torch.Tensor, y: torch.Tensor, reference_x: torch.Tensor, reference_y: torch.Tensor,
                   batch: bool) -> tuple[torch.Tensor, Any]:
            compared = (method.model, x, y, reference_x, reference_y)
            return gradient_scores_with_batch(*compared) if batch else (gradient_scores(*compared), None)

        return GSSAdmission(buffer, method.policy_options(), scores)
    if needs_slots(method.buffer_policy):
        return ASERReplacement(buffer, method.policy_options(), method.stored_features, method.run.num_classes,
                               method.run.workers.seed(ASER_DRAWS_SEED))
    return None
