"""Progressive neural networks (Rusu et al., "Progressive Neural Networks", 2016) over an MLP.

One column (a copy of the MLP's architecture, freshly initialized) per task. Column k's layer i
takes, besides its own layer i-1, the layer-(i-1) activations of every earlier column through a
non-linear lateral adapter: U relu(V (alpha * a) + c), where a is those activations concatenated,
alpha a learned per-feature scale, V projects them to the width of one column's layer i-1, and U
maps that to layer i. A sample goes through the column of its task label. The lateral inputs are
detached: an earlier column is never trained by a later task's samples, so once its task is
over it does not change (no forgetting, by construction), whatever the optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.models.normalization import InputNormalization


@dataclass(frozen=True)
class MLPLayout:
    """What a progressive network copies from an MLP backbone: its input normalization (if
    any), its flattened input size, its hidden widths and its number of outputs."""

    normalization: InputNormalization | None
    input_size: int
    hidden_sizes: tuple[int, ...]
    num_classes: int


def mlp_layout(backbone: nn.Module) -> MLPLayout:
    """The layout of `backbone` if it is a stack of `Linear -> ReLU` layers over flattened inputs
    with a linear classifier (`sylvan.models.MLP`, possibly normalizing its inputs first);
    `ConfigurationError` otherwise."""
    features, classifier = getattr(backbone, "features", None), getattr(backbone, "classifier", None)
    if not isinstance(features, nn.Sequential) or not isinstance(classifier, nn.Linear):
        raise ConfigurationError(_not_an_mlp(backbone))
    layers = list(features)
    normalization = layers.pop(0) if layers and isinstance(layers[0], InputNormalization) else None
    if not layers or not isinstance(layers[0], nn.Flatten):
        raise ConfigurationError(_not_an_mlp(backbone))
    layers = layers[1:]
    pairs = [layers[i:i + 2] for i in range(0, len(layers), 2)]
    if not all(len(p) == 2 and isinstance(p[0], nn.Linear) and isinstance(p[1], nn.ReLU) for p in pairs):
        raise ConfigurationError(_not_an_mlp(backbone))
    widths = [p[0].in_features for p in pairs] + [classifier.in_features]
    input_size = widths[0]
    hidden = tuple(p[0].out_features for p in pairs)
    if list(hidden) != widths[1:]:
        raise ConfigurationError(_not_an_mlp(backbone))
    return MLPLayout(normalization, input_size, hidden, classifier.out_features)


def _not_an_mlp(backbone: nn.Module) -> str:
    return (
        f"pnn builds its columns from an MLP backbone (Linear -> ReLU layers over flattened inputs and a linear "
        f"classifier: --backbone mlp or mlp_400); {type(backbone).__name__} is not one"
    )


class LateralAdapter(nn.Module):
    """U relu(V (alpha * a) + c): the earlier columns' activations `a` (concatenated), scaled per
    feature by alpha (initialized in [0, 0.1)), projected to `reduced` features, mapped to the
    `out_features` of the layer they feed."""

    def __init__(self, in_features: int, reduced: int, out_features: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.rand(1, in_features) * 0.1)
        self.project = nn.Linear(in_features, reduced)
        self.out = nn.Linear(reduced, out_features, bias=False)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.project(a * self.alpha)))


class ProgressiveMLP(nn.Module):
    """`nb_columns` columns of an MLP with lateral adapters; `forward(x, task_labels)` gives each
    sample the output of its task's column. All columns are built at once (so the network's
    state is the same size through a run and checkpoints resume it); a column is computed only
    when a sample of its task, or of a later one, is in the batch."""

    def __init__(self, layout: MLPLayout, nb_columns: int) -> None:
        super().__init__()
        if nb_columns < 1:
            raise ValueError(f"a progressive network needs at least one column, got {nb_columns}")
        self.normalization = layout.normalization
        self.widths = (layout.input_size, *layout.hidden_sizes, layout.num_classes)
        self.columns = nn.ModuleList(
            nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.widths[:-1], self.widths[1:]))
            for _ in range(nb_columns)
        )
        # laterals[k - 1][i - 1] feeds layer i of column k (k, i >= 1) from layer i - 1 of columns 0..k-1
        self.laterals = nn.ModuleList(
            nn.ModuleList(
                LateralAdapter(k * self.widths[i], self.widths[i], self.widths[i + 1])
                for i in range(1, len(self.widths) - 1)
            )
            for k in range(1, nb_columns)
        )
        self.reset_parameters()

    @classmethod
    def from_backbone(cls, backbone: nn.Module, nb_columns: int) -> ProgressiveMLP:
        """Columns with `backbone`'s layout (`mlp_layout`), its input normalization in front."""
        return cls(mlp_layout(backbone), nb_columns)

    @property
    def nb_columns(self) -> int:
        return len(self.columns)

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases (the MLP's initialization) for every column
        and adapter; the adapters' alphas keep their draw in [0, 0.1)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        if task_labels is None:
            raise ValueError("a progressive network needs the task label of every sample")
        task_labels = task_labels.to(x.device).long()
        if self.normalization is not None:
            x = self.normalization(x)
        x = x.flatten(1)
        if len(x) == 0:
            return x.new_zeros(0, self.widths[-1])
        counts = torch.bincount(task_labels.flatten(), minlength=self.nb_columns).tolist()
        if len(counts) > self.nb_columns:
            raise ValueError(f"task label {len(counts) - 1} has no column: the network has {self.nb_columns}")
        present_list = [count > 0 for count in counts]
        top = max(k for k, p in enumerate(present_list) if p)
        outputs: list[torch.Tensor] = []
        hidden: list[list[torch.Tensor]] = []  # hidden[k][i]: column k's input to its layer i (detached)
        for k in range(top + 1):
            # a column without samples of its own only feeds later columns' laterals (detached):
            # no graph for it
            with torch.set_grad_enabled(torch.is_grad_enabled() and present_list[k]):
                out, inputs = self.column_forward(k, x, hidden)
            outputs.append(out)
            hidden.append(inputs)
        stacked = torch.stack(outputs)  # (columns, batch, classes)
        return stacked[task_labels, torch.arange(len(x), device=x.device)]

    def column_forward(
        self, k: int, x: torch.Tensor, hidden: Sequence[Sequence[torch.Tensor]]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Column k's output for `x` (flattened) given the earlier columns' layer inputs, and its
        own layer inputs, detached, for the later columns' laterals."""
        layers = self.columns[k]
        h = x
        inputs = [x]
        for i, layer in enumerate(layers):
            z = layer(h)
            if k > 0 and i > 0:
                z = z + self.laterals[k - 1][i - 1](torch.cat([hidden[j][i] for j in range(k)], dim=1))
            if i == len(layers) - 1:
                return z, inputs
            h = F.relu(z)
            inputs.append(h.detach())
        raise AssertionError("a column has at least one layer")  # pragma: no cover

    def column_parameters(self, k: int) -> list[nn.Parameter]:
        """The parameters that column k's output depends on and that only its task trains: its
        layers and its lateral adapters."""
        own = list(self.columns[k].parameters())
        return own + (list(self.laterals[k - 1].parameters()) if k > 0 else [])

    def extra_repr(self) -> str:
        return f"columns={self.nb_columns}, widths={self.widths}, parameters={self.parameter_count()}"

    def parameter_count(self) -> int:
        return sum(math.prod(p.shape) for p in self.parameters())
