"""Per-parameter importances that need every sample's own gradient: the diagonal Fisher
information EWC weighs its parameters with, F_i = mean over samples of
p(y|x) * (d log p(y|x) / d w_i)^2 with y the sample's own label, and MAS's sensitivity of the
output, Omega_i = mean over samples of |d ||f(x)||^2 / d w_i| (the squared L2 norm of the logits).

Every sample needs its own gradient, squared (or its absolute value taken) before it is summed.
The general way (`per_sample_statistic`) computes them with `torch.func.vmap`, a batch at a time:
it holds batch x parameters values (80 MB per 256 samples for the Seq-MNIST MLP) and reads them
several times, which made the Fisher pass most of an EWC run. For a stack of linear layers
(`linear_stack_statistic`) they need no per-sample gradient: a linear layer's gradient for sample
n is the outer product g_n a_n^T of the gradient at its output and its input, so
sum_n p_n (g_n a_n^T)^2 = (p * g^2)^T (a^2) and sum_n |g_n a_n^T| = |g|^T |a|, one matrix product
per layer after one ordinary backward pass over the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from sylvan.models.mlp import MLP

# Leaf modules that act on each sample of a batch alone (no statistics across the batch).
SAMPLEWISE_LEAVES = (nn.Linear, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
                     nn.Flatten, nn.Identity, nn.Dropout)


class NotALinearStack(Exception):
    """A layer of the model did not see each sample once as a vector (found during the pass)."""


def is_linear_stack(model: nn.Module) -> bool:
    """Whether `linear_stack_fisher` applies: an `nn.Sequential` (or sylvan's `MLP`, whose forward
    is its two sequential parts) of sample-wise modules, none used twice, whose parameters all
    sit in linear layers and are trained. A model with a forward of its own could mix the samples
    of a batch, so it is not one, whatever its layers."""
    if type(model) not in (nn.Sequential, MLP):
        return False
    seen: set[int] = set()
    for _, module in model.named_modules(remove_duplicate=False):
        if id(module) in seen:
            return False
        seen.add(id(module))
        if module is model or type(module) is nn.Sequential:
            if next(module.parameters(recurse=False), None) is not None:
                return False
        elif not isinstance(module, SAMPLEWISE_LEAVES) or next(module.children(), None) is not None:
            return False
    return all(p.requires_grad for p in model.parameters())


class SampleStatistic(NamedTuple):
    """What is summed over samples: `transform` (elementwise, and multiplicative: transform(a b) =
    transform(a) transform(b)) of the gradient of `objective` (one value per sample, from the
    logits and the labels), weighted by exp(objective) where `weighted`."""

    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    transform: Callable[[torch.Tensor], torch.Tensor]
    weighted: bool


def _log_likelihood(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=1).gather(1, y.view(-1, 1)).squeeze(1)


def _squared_output_norm(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.pow(2).sum(1)


FISHER = SampleStatistic(_log_likelihood, torch.square, weighted=True)
OUTPUT_SENSITIVITY = SampleStatistic(_squared_output_norm, torch.abs, weighted=False)


def diagonal_fisher(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """{parameter name: F} on the CPU, over the samples (x, y), computed `batch_size` samples at a
    time on the model's device, in the mode the caller set (evaluation, for EWC)."""
    return diagonal_statistic(model, x, y, FISHER, batch_size)


def output_sensitivity(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """{parameter name: Omega} on the CPU: MAS's importance, the mean over the samples x of the
    absolute gradient of the squared L2 norm of the model's output (no labels needed)."""
    labels = torch.zeros(len(x), dtype=torch.long)
    return diagonal_statistic(model, x, labels, OUTPUT_SENSITIVITY, batch_size)


def diagonal_statistic(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, statistic: SampleStatistic, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """{parameter name: mean over the samples (x, y) of `statistic`} on the CPU, `batch_size`
    samples at a time on the model's device, in the mode the caller set."""
    compute = linear_stack_statistic if is_linear_stack(model) else per_sample_statistic
    device = next(model.parameters()).device
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        try:
            compute(model, xb, yb, total, statistic)
        except NotALinearStack:  # raised before anything was added: this batch and the rest, per sample
            compute = per_sample_statistic
            compute(model, xb, yb, total, statistic)
    return {name: (value / max(len(y), 1)).cpu() for name, value in total.items()}


def per_sample_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, fisher: dict[str, torch.Tensor]) -> None:
    """Add sum_n p_n g_n^2 over the batch to `fisher` (`per_sample_statistic` of the Fisher)."""
    per_sample_statistic(model, x, y, fisher, FISHER)


def linear_stack_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, fisher: dict[str, torch.Tensor]) -> None:
    """Add sum_n p_n g_n^2 over the batch to `fisher` (`linear_stack_statistic` of the Fisher)."""
    linear_stack_statistic(model, x, y, fisher, FISHER)


def per_sample_statistic(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, total: dict[str, torch.Tensor], statistic: SampleStatistic
) -> None:
    """Add the batch's sum of `statistic` to `total`, with per-sample gradients from `torch.func`
    (any model; each sample goes through the model alone)."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def objective(weights: dict[str, torch.Tensor], sample: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (weights, buffers), (sample.unsqueeze(0),))
        return statistic.objective(logits, label.view(1)).squeeze(0)

    # torch.func.grad computes gradients even under an outer no_grad
    grads, values = vmap(grad_and_value(objective), in_dims=(None, 0, 0))(params, x, y)
    weight = values.exp() if statistic.weighted else torch.ones_like(values)
    for name, g in grads.items():
        total[name] += (weight.view(-1, *[1] * (g.dim() - 1)) * statistic.transform(g)).sum(0)


def linear_layer_terms(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor,
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, list[tuple[nn.Linear, str, torch.Tensor, torch.Tensor]]]:
    """For a model that `is_linear_stack`, one forward and backward pass of the batch: the values
    of `objective` (one per sample, from the logits and the labels) and, for each linear layer,
    (the layer, its name, its input, the gradient of the values' sum at its output). Sample n's
    gradient of the layer's weight is the outer product of row n of the output gradient and row n
    of the input, and of its bias, that row of the output gradient. Raises `NotALinearStack`
    when a layer does not see each sample once as a vector."""
    layers = {name: module for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if name in inputs or args[0].dim() != 2:
                raise NotALinearStack(name)
            inputs[name] = args[0].detach()
            outputs[name] = output

        return hook

    handles = [layer.register_forward_hook(keep(name)) for name, layer in layers.items()]
    try:
        with torch.enable_grad():
            values = objective(model(x.detach()), y)
            # each sample's value depends on its own row of each output alone, so the gradient of
            # their sum at a layer's output holds every sample's own gradient
            names = list(outputs)
            output_grads = torch.autograd.grad(values.sum(), [outputs[name] for name in names])
    finally:
        for handle in handles:
            handle.remove()
    terms = [(layers[name], name, inputs[name], output_grad) for name, output_grad in zip(names, output_grads)]
    return values.detach(), terms


def linear_stack_statistic(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, total: dict[str, torch.Tensor], statistic: SampleStatistic
) -> None:
    """Add the batch's sum of `statistic` to `total` for a model that `is_linear_stack`: one
    forward and backward pass of the batch (`linear_layer_terms`)."""
    values, terms = linear_layer_terms(model, x, y, statistic.objective)
    weight = values.exp().unsqueeze(1) if statistic.weighted else 1.0
    for layer, name, layer_input, output_grad in terms:
        weighted = statistic.transform(output_grad) * weight
        total[f"{name}.weight"] += weighted.T @ statistic.transform(layer_input)
        if layer.bias is not None:
            total[f"{name}.bias"] += weighted.sum(0)


def scaled_to_unit(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`values` mapped to [0, 1] by the smallest and largest of all of them together (all zero
    where they are all equal)."""
    low = min(float(v.min()) for v in values.values())
    high = max(float(v.max()) for v in values.values())
    span = high - low
    return {name: (v - low) / span if span > 0 else torch.zeros_like(v) for name, v in values.items()}
