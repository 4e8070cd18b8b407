"""Orthogonal bases of what earlier tasks need kept: OGD's basis of logit gradients, and GPM's
bases of layer representations, grown task after task."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from sylvan.errors import ConfigurationError
from sylvan.methods.core.supervised import evaluating
from sylvan.methods.parts.gradient_scores import GRADIENT_ELEMENTS_AT_ONCE

LOGIT_GRADIENTS = ("ground_truth", "all", "average")


# a vector whose part outside the basis is below this share of the largest new vector's norm is
# taken as already in its span (float32 leaves about 1e-7 of rounding in a residual)
RANK_TOLERANCE = 1e-5


COLUMNS_AT_ONCE = 8192  # weights per block of a residual copied to float64


def logit_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """(vectors, parameters) float32: the gradients, with respect to every trainable parameter of
    `model` (flattened and joined in `model.parameters()` order), of each sample's logit of its
    label (`ground_truth`, one row per sample), of each of its logits (`all`, one row per sample
    and class, sample-major) or of the mean of its logits (`average`, one row per sample). The
    model is used as it is (call it in evaluation mode for gradients that do not depend on the
    batch); samples are taken a few at a time, so that a large model's values fit in memory."""
    if kind not in LOGIT_GRADIENTS:
        raise ValueError(f"unknown logit gradients {kind!r}; expected one of {', '.join(LOGIT_GRADIENTS)}")
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    count = sum(p.numel() for p in params.values())

    def logits(parameters: dict[str, torch.Tensor], sample: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (parameters, buffers), (sample.unsqueeze(0),))[0].float()

    def label_logit(parameters: dict[str, torch.Tensor], sample: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return logits(parameters, sample).gather(0, label.reshape(1))[0]

    def mean_logit(parameters: dict[str, torch.Tensor], sample: torch.Tensor, _label: torch.Tensor) -> torch.Tensor:
        return logits(parameters, sample).mean()

    outputs = 1
    if kind == "all":
        with torch.no_grad():
            outputs = logits(params, x[:1]).numel() if len(x) else 1
    chunk = max(1, GRADIENT_ELEMENTS_AT_ONCE // max(count * outputs, 1))
    rows = []
    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        for part_x, part_y in zip(x.float().split(chunk), y.split(chunk)):
            if kind == "all":
                jacobians = vmap(jacrev(logits), in_dims=(None, 0))(params, part_x)  # (n, classes, *shape)
                rows.append(torch.cat([j.flatten(2) for j in jacobians.values()], 2).flatten(0, 1))
            else:
                function = label_logit if kind == "ground_truth" else mean_logit
                gradients = vmap(grad(function), in_dims=(None, 0, 0))(params, part_x, part_y)
                rows.append(torch.cat([g.flatten(1) for g in gradients.values()], 1))
    return torch.cat(rows) if rows else torch.zeros(0, count, device=x.device)


def grown_basis(basis: torch.Tensor | None, vectors: torch.Tensor) -> torch.Tensor | None:
    """`basis` (orthonormal rows, or None) joined by orthonormal rows spanning what `vectors`
    (rows) add to its span: their residuals R outside it (classical Gram-Schmidt, done twice so
    that rounding leaves them orthogonal), turned orthonormal through the eigenvectors of R R^T
    (float64, accumulated a block of columns at a time): the directions whose singular value is
    above `RANK_TOLERANCE` of the largest vector's norm, the largest first. No more rows than the
    space has dimensions; None when neither has any. (A thin SVD of R gives the same rows but
    takes ten times as long where R has thousands of rows, as `--logit_gradients all` makes.)"""
    residual = vectors.float()
    if basis is not None:
        for _ in range(2):
            residual = residual - (residual @ basis.T) @ basis
    scale = float(vectors.norm(dim=1).max()) if len(vectors) else 0.0
    room = residual.shape[1] - (0 if basis is None else len(basis))
    new = residual[:0]
    if scale > 0 and room > 0:
        blocks = residual.split(COLUMNS_AT_ONCE, dim=1)
        gram = sum(block.double() @ block.double().T for block in blocks)
        values, eigenvectors = torch.linalg.eigh(gram)  # ascending
        kept = (values > (RANK_TOLERANCE * scale) ** 2).nonzero().squeeze(1).flip(0)[:room]
        if len(kept):
            coefficients = eigenvectors[:, kept].T / values[kept].sqrt()[:, None]  # rows: u_k^T R / sigma_k
            new = torch.cat([(coefficients @ block.double()).float() for block in blocks], dim=1)
            if basis is not None:  # the rounding of the last steps, taken out again
                new = new - (new @ basis.T) @ basis
                new = new / new.norm(dim=1, keepdim=True)
    if not len(new):
        return basis
    return new if basis is None else torch.cat([basis, new])


NEGLIGIBLE_ENERGY = 1e-10  # a direction with less than this share of a task's energy never joins the memory


def projected_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers whose weights GPM projects, by module name: every `nn.Linear` and `nn.Conv2d`.
    A `ConfigurationError` for a grouped convolution (its weight does not act on one input space)."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    for name, layer in layers.items():
        if isinstance(layer, nn.Conv2d) and (layer.groups != 1 or layer.padding_mode != "zeros"):
            raise ConfigurationError(f"gpm projects the gradients of ungrouped, zero-padded convolutions, not {name}")
    return layers


def layer_inputs(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The columns of the layer's representation for input `x`, as rows (samples x input
    dimension): for a linear layer its inputs, for a convolution every patch it multiplies."""
    if isinstance(layer, nn.Conv2d):
        patches = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return x.reshape(-1, x.shape[-1])


def grown_bases(bases: torch.Tensor | None, gram: torch.Tensor, threshold: float) -> torch.Tensor | None:
    """The memory of one layer after a task whose representation R has Gram matrix R R^T
    (`gram`, float64): `bases` (orthonormal columns, or None) joined by the fewest left singular
    vectors of the residual (I - M M^T) R that bring the captured share of ||R||^2 to
    `threshold`, the largest first (none that carries no energy: R's null space stays free)."""
    total = float(torch.trace(gram))
    if total <= 0:
        return bases
    dim = gram.shape[0]
    if bases is None:
        captured, residual = 0.0, gram
    else:
        captured = float(torch.trace(bases.T @ gram @ bases))
        complement = torch.eye(dim, dtype=gram.dtype, device=gram.device) - bases @ bases.T
        residual = complement @ gram @ complement
    if captured / total >= threshold:
        return bases
    # the SVD of the symmetric residual: its eigenvectors, values descending. LAPACK's eigh fails
    # to converge on some such matrices with many zero eigenvalues (a convolution's padding)
    vectors, values, _ = torch.linalg.svd(residual)
    reached = (captured + torch.cumsum(values, 0)) / total >= threshold
    count = int(reached.nonzero()[0]) + 1 if bool(reached.any()) else len(values)
    carrying = int((values > NEGLIGIBLE_ENERGY * total).sum())  # rounding keeps a threshold of 1 from being met
    room = dim - (0 if bases is None else bases.shape[1])
    new = vectors[:, : min(count, carrying, room)]
    return new if bases is None else torch.cat([bases, new], dim=1)


def representation_grams(model: nn.Module, layers: dict[str, nn.Module], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """R_l R_l^T for every layer l of `layers` (GPM's projected layers of `model`) on the
    samples `x` (float64, on the CPU), in evaluation mode and in chunks."""
    grams: dict[str, torch.Tensor] = {}

    def recorder(name: str, layer: nn.Module):
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            rows = layer_inputs(layer, inputs[0].detach()).to(torch.float64)
            gram = rows.T @ rows
            grams[name] = gram if name not in grams else grams[name] + gram
        return record

    handles = [layer.register_forward_pre_hook(recorder(name, layer)) for name, layer in layers.items()]
    device = next(model.parameters()).device
    try:
        with evaluating(model) as evaluated, torch.no_grad():
            for start in range(0, len(x), 64):
                evaluated(x[start : start + 64].to(device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: gram.cpu() for name, gram in grams.items()}
