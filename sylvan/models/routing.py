"""Running each sample of a batch through the part its group picks (a task's path or weights, an
expert), and putting the outputs back in the samples' order."""

from __future__ import annotations

from collections.abc import Callable

import torch


def outputs_by_group(groups: torch.Tensor, compute: Callable[[int, torch.Tensor], torch.Tensor | None]
                     ) -> torch.Tensor | None:
    """Each row's output, `compute(group, rows)` giving the outputs of the rows (a boolean mask)
    of one group, or None for a group with nothing to run (its rows stay 0). None where no group
    gave outputs."""
    outputs: torch.Tensor | None = None
    for group in groups.unique().tolist():
        rows = groups == group
        out = compute(group, rows)
        if out is None:
            continue
        if outputs is None:
            outputs = out.new_zeros(len(groups), *out.shape[1:])
        outputs[rows] = out
    return outputs
