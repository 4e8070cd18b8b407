"""Gradients that a method takes itself, besides those of its training loss, kept at their true
size under float16 mixed precision.

Under `--precision 16-mixed` the forward pass runs in float16, whose smallest positive value is
about 6e-8, so gradients flowing back through float16 activations underflow to zero where they
are small. The engine therefore multiplies the training loss by a loss scale (2**16 at first,
adapted as the run goes) before its backward pass, and divides the weights' gradients by it
before the optimizer steps. A method that differentiates another loss with
`torch.autograd.grad` (GEM's and A-GEM's memory losses, MIR's virtual step) must do the same, or
its gradients lose what the minibatch's keeps. Under float32 and bfloat16 (whose range is
float32's) there is no scale, and the gradients are taken as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def unscaled_gradients(
    loss: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    scaler: torch.amp.GradScaler | None,
    *,
    retain_graph: bool = False,
    require_finite: bool = True,
) -> tuple[torch.Tensor | None, ...]:
    """The gradients of `loss` with respect to `inputs` (None for an input it does not reach),
    taken at `scaler`'s current loss scale and divided by it.

    The loss scale grows until the training loss's gradients overflow, and the scaler then skips
    that step. Another loss can overflow at a scale the training loss stands: with
    `require_finite`, gradients that overflowed are taken again at scale 1, which costs a wait
    for the device to check them on every step that has a scaler. Without it, they are returned
    as they are, for a caller whose gradients overflow only where the training loss's do (MIR's
    virtual step differentiates the training loss itself)."""
    if scaler is None:
        return torch.autograd.grad(loss, inputs, retain_graph=retain_graph, allow_unused=True)
    scale = scaler.scale(torch.ones((), device=loss.device))
    keep_graph = retain_graph or require_finite  # for a second try at scale 1
    gradients = torch.autograd.grad(loss * scale, inputs, retain_graph=keep_graph, allow_unused=True)
    present = [g for g in gradients if g is not None]
    if require_finite and present and not bool(torch.stack([g.isfinite().all() for g in present]).all()):
        return torch.autograd.grad(loss, inputs, retain_graph=retain_graph, allow_unused=True)
    return tuple(None if g is None else g / scale.to(g.dtype) for g in gradients)
