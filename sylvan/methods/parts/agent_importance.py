"""The importance of each weight of an agent's networks, as the weight-regularization methods
measure it on the reinforcement-learning branch (Continual World's definitions, Wołczyk et al.,
NeurIPS 2021), over transitions drawn from the agent's replay memory. A network is seen as a
Gaussian over its outputs (`Agent.output_distribution`): mean m(x) and standard deviation
s(x) = exp(log s(x)), or a unit one where the network has none (Q-values).

- `fisher`: the diagonal Fisher information of that Gaussian, per sample
  sum_d [(dm_d/dw)^2 + 2 (ds_d/dw)^2] / s_d^2 = sum_d (dm_d/dw)^2 / s_d^2 + 2 (d log s_d/dw)^2,
  averaged over the samples; a policy's (a network with a standard deviation) is taken as at
  least 1e-5 per weight, as Continual World does.
- `output_sensitivity` (MAS): the mean over samples of |d (||m||^2 + ||log s||^2) / dw|.
- `uniform` (L2): 1 for every weight.

Each sample's own gradient is needed before it is squared: they come from `torch.func` (vmap of
the Jacobian), `chunk` samples at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

Transitions = dict[str, torch.Tensor]
FISHER_FLOOR = 1e-5  # the smallest Fisher information of a policy's weight (Continual World's clip)
PREFIX = "network."


def per_sample_jacobians(view: nn.Module, transitions: Transitions, chunk: int,
                         add: Callable[[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None,
                                        torch.Tensor | None], None]) -> None:
    """Call `add(jacobians, mean, log_std, jacobians_of_log_std)` for each chunk of `transitions`:
    per parameter name (without the view's prefix), the Jacobian of each sample's mean (chunk,
    outputs, *shape), and the same of its log standard deviation (None where the view gives none)."""
    params = {name: p.detach() for name, p in view.named_parameters()}
    buffers = {name: b.detach() for name, b in view.named_buffers()}

    def outputs(weights: dict[str, torch.Tensor], sample: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        batch = {key: value.unsqueeze(0) for key, value in sample.items()}
        mean, log_std = functional_call(view, (weights, buffers), (batch,))
        return mean.squeeze(0), (log_std if log_std is not None else torch.zeros_like(mean)).squeeze(0)

    count = len(next(iter(transitions.values())))
    has_std = view(transitions_slice(transitions, 0, 1))[1] is not None
    for start in range(0, count, chunk):
        sample = transitions_slice(transitions, start, start + chunk)
        (jac_mean, jac_log_std), (mean, log_std) = vmap(
            lambda s: (jacrev(outputs, has_aux=False)(params, s), outputs(params, s)), in_dims=(0,))(sample)
        strip = {name[len(PREFIX):]: value for name, value in jac_mean.items()}
        strip_std = {name[len(PREFIX):]: value for name, value in jac_log_std.items()} if has_std else None
        add(strip, mean, log_std if has_std else None, strip_std)


def transitions_slice(transitions: Transitions, start: int, stop: int) -> Transitions:
    return {key: value[start:stop] for key, value in transitions.items()}


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(chunk, outputs) values broadcast against a Jacobian (chunk, outputs, *parameter shape)."""
    return values.view(*values.shape, *[1] * (like.dim() - values.dim()))


def fisher(view: nn.Module, transitions: Transitions, chunk: int = 32) -> dict[str, torch.Tensor]:
    """{parameter name: mean Fisher information} of the view's network over `transitions`."""
    total: dict[str, torch.Tensor] = {}

    def add(jac_mean, mean, log_std, jac_log_std) -> None:
        for name, jm in jac_mean.items():
            if log_std is None:
                value = jm.pow(2).sum(1)
            else:
                value = (jm.pow(2) / _expand(log_std.exp().pow(2) + 1e-6, jm)).sum(1)
                value = value + 2 * jac_log_std[name].pow(2).sum(1)
                value = value.clamp(min=FISHER_FLOOR)
            total[name] = total.get(name, 0) + value.sum(0)

    per_sample_jacobians(view, transitions, chunk, add)
    count = len(next(iter(transitions.values())))
    return {name: (value / count).cpu() for name, value in total.items()}


def output_sensitivity(view: nn.Module, transitions: Transitions, chunk: int = 32) -> dict[str, torch.Tensor]:
    """{parameter name: mean |gradient of the squared norm of the outputs|} over `transitions`.
    The gradient of sum_d m_d^2 is sum_d 2 m_d dm_d/dw (and the same of log s)."""
    total: dict[str, torch.Tensor] = {}

    def add(jac_mean, mean, log_std, jac_log_std) -> None:
        for name, jm in jac_mean.items():
            gradient = (2 * _expand(mean, jm) * jm).sum(1)
            if log_std is not None:
                gradient = gradient + (2 * _expand(log_std, jm) * jac_log_std[name]).sum(1)
            total[name] = total.get(name, 0) + gradient.abs().sum(0)

    per_sample_jacobians(view, transitions, chunk, add)
    count = len(next(iter(transitions.values())))
    return {name: (value / count).cpu() for name, value in total.items()}


def uniform(view: nn.Module, transitions: Transitions, chunk: int = 32) -> dict[str, torch.Tensor]:
    """{parameter name: ones}: every weight equally important (L2)."""
    return {name[len(PREFIX):]: torch.ones_like(p, device="cpu") for name, p in view.named_parameters()}
