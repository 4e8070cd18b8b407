"""GSS's per-sample gradient scores (`sylvan.buffers.gss`): how far each new sample's gradient is
from pointing where the memory's already do.

The score of a sample is 1 + the largest cosine similarity between the gradient of its loss
(cross-entropy, with respect to every trainable parameter) and the gradients of a few stored
samples drawn at random: in [0, 2], low when the sample brings a direction the compared samples
lack. Scores are computed in float32 and in evaluation mode (as the method's training step sees
the weights, without dropout masks or batch statistics).

Only the gradients' inner products are needed. For a stack of linear layers (the MLPs of the
MNIST family, `importance.is_linear_stack`) they come from one ordinary backward pass: sample n's
gradient of a linear layer is the outer product of its output gradient g_n and input a_n, so
<grad_n, grad_m> = sum over layers of (g_n . g_m) (a_n . a_m + 1 where the layer has a bias), a
few small matrix products, without any per-sample gradient. Other models compute the per-sample
gradients together (`torch.func.vmap` of `torch.func.grad`), a few samples at a time where the
model is large.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from sylvan.methods.core.supervised import evaluating
from sylvan.methods.parts.importance import NotALinearStack, is_linear_stack, linear_layer_terms

NO_REFERENCE_SCORE = 1.0  # a sample compared with nothing: neither aligned nor opposed (cosine 0)
GRADIENT_ELEMENTS_AT_ONCE = 1 << 25  # per-sample gradient values held at once (128 MiB of float32)
COSINE_EPS = 1e-8  # the smallest product of norms divided by: a zero gradient has cosine 0


def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(len(x), parameters): row k is the gradient of sample k's cross-entropy with respect to
    every trainable parameter of `model`, flattened. `model` is used as it is (call it in
    evaluation mode for scores that do not depend on the batch)."""
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def loss(parameters: dict[str, torch.Tensor], sample: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (parameters, buffers), (sample.unsqueeze(0),))
        return F.cross_entropy(logits.float(), label.unsqueeze(0))

    gradients = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([g.flatten(1) for g in gradients.values()], 1)


def gradient_scores(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, reference_x: torch.Tensor, reference_y: torch.Tensor
) -> torch.Tensor:
    """(len(x),) float32 on x's device: 1 + max over the reference samples of the cosine
    similarity between sample k's gradient and the reference sample's; `NO_REFERENCE_SCORE`
    for every sample when there is no reference sample. A zero gradient has cosine 0 with all."""
    return _scores(model, x, y, reference_x, reference_y, with_batch=False)[0]


def gradient_scores_with_batch(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, reference_x: torch.Tensor, reference_y: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """`gradient_scores`, and the score of the batch as a whole: 1 + the largest cosine
    similarity between the gradient of the batch's mean loss and a reference sample's gradient
    (what the batch-gated GSS of `sylvan.buffers.gss` admits a batch by). The batch's gradient is
    the mean of its samples' (the model is evaluated in evaluation mode, where each sample's
    loss depends on that sample alone), so it costs nothing beyond the samples' scores.
    `NO_REFERENCE_SCORE` too when there is no reference sample."""
    return _scores(model, x, y, reference_x, reference_y, with_batch=True)


def _scores(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, reference_x: torch.Tensor, reference_y: torch.Tensor,
    with_batch: bool,
) -> tuple[torch.Tensor, float]:
    if len(reference_x) == 0:
        return torch.full((len(x),), NO_REFERENCE_SCORE, device=x.device), NO_REFERENCE_SCORE
    compared = len(reference_x)
    batch_score = NO_REFERENCE_SCORE
    with evaluating(model), torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        samples, labels = torch.cat([reference_x, x]).float(), torch.cat([reference_y, y])
        gram = linear_stack_gram(model, samples, labels) if is_linear_stack(model) else None
        if gram is not None:
            norms = gram.diagonal().clamp(min=0).sqrt()
            scores = [largest_cosines(gram[compared:, :compared], norms[compared:], norms[:compared])]
            if with_batch and len(x):
                # <mean_n g_n, g_m> = mean_n <g_n, g_m>; |mean_n g_n|^2 = mean_{n,n'} <g_n, g_n'>
                products = gram[compared:, :compared].mean(0, keepdim=True)
                norm = gram[compared:, compared:].mean().clamp(min=0).sqrt().reshape(1)
                batch_score = _as_score(largest_cosines(products, norm, norms[:compared]))
        else:
            parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
            chunk = max(compared + 1, GRADIENT_ELEMENTS_AT_ONCE // max(parameters, 1))
            # the reference samples' gradients travel with the first chunk of new samples
            gradients = per_sample_gradients(model, samples[:chunk], labels[:chunk])
            reference, norms = gradients[:compared], gradients[:compared].norm(dim=1)
            parts = [gradients[compared:]]
            if len(samples) > chunk:  # (splitting an empty tensor gives one empty part)
                parts += (per_sample_gradients(model, part_x, part_y)
                          for part_x, part_y in zip(samples[chunk:].split(chunk), labels[chunk:].split(chunk)))
            scores, total = [], None
            for part in parts:
                scores.append(largest_cosines(part @ reference.T, part.norm(dim=1), norms))
                if with_batch:
                    total = part.sum(0, keepdim=True) if total is None else total + part.sum(0, keepdim=True)
            if total is not None and len(x):
                mean = total / len(x)
                batch_score = _as_score(largest_cosines(mean @ reference.T, mean.norm(dim=1), norms))
    return torch.cat(scores).add_(1).clamp_(0, 2), batch_score


def _as_score(cosine: torch.Tensor) -> float:
    return float(cosine.add(1).clamp(0, 2).item())


def linear_stack_gram(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """(len(x), len(x)): the inner products of the samples' cross-entropy gradients, for a model
    that `is_linear_stack`, from one backward pass; None where a layer turns out not to see each
    sample once as a vector."""
    try:
        _, terms = linear_layer_terms(model, x, y, lambda logits, labels: F.cross_entropy(
            logits.float(), labels, reduction="none"))
    except NotALinearStack:
        return None
    gram = torch.zeros(len(x), len(x), device=x.device)
    for layer, _, layer_input, output_grad in terms:
        inputs = layer_input.float() @ layer_input.float().T
        if layer.bias is not None:
            inputs += 1
        gram += (output_grad.float() @ output_grad.float().T) * inputs
    return gram


def largest_cosines(products: torch.Tensor, norms: torch.Tensor, reference_norms: torch.Tensor) -> torch.Tensor:
    """Each row's largest cosine similarity with a reference sample, from the inner products
    `products` (samples x reference samples) and the gradients' norms."""
    scale = torch.outer(norms, reference_norms).clamp_(min=COSINE_EPS)
    return (products / scale).amax(1)
